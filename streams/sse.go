package streams

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
)

// escapeMark starts a data value that was escaped. SSE treats CR as a line
// break, so a line holding one cannot go out as it is; the rare lines that
// need it are written as escapeMark + the line with \ and CR escaped.
const escapeMark = '\x1e'

// needsEscape reports whether a line cannot go out as a data value as it
// is: SSE reads a CR as a line break; some clients drop an empty data value
// (EventSource drops an event whose only data is empty, fetch-event-source
// empty values at an event's start) or strip a byte-order mark; and a line
// that begins with escapeMark would be taken as escaped.
func needsEscape(line []byte) bool {
	return len(line) == 0 || line[0] == escapeMark || bytes.IndexByte(line, '\r') >= 0 ||
		bytes.HasPrefix(line, []byte("\uFEFF"))
}

// MaxEventBytes bounds one log event's data: r3labs/sse and tmaxmax/go-sse
// read events into 64 KiB buffers by default. A batch bigger than this goes
// out as several events (in one write); only a single line longer than it
// makes a bigger event.
const MaxEventBytes = 32 << 10

// AppendLogEvent appends b as "log" events of at most MaxEventBytes: a data
// field per line, then the id, the offset just after the event's last line.
// The id comes last so that a client that keeps an id as soon as it reads
// one never keeps the id of an event it did not receive whole.
func AppendLogEvent(dst []byte, b *Batch) []byte {
	off := b.Start
	size := -1 // data bytes in the open event; -1: none open
	for _, l := range b.Lines {
		n := len(l) + len("data: \n")
		if size >= 0 && size+n > MaxEventBytes {
			dst = appendID(dst, off)
			size = -1
		}
		if size < 0 {
			dst = append(dst, "event: log\n"...)
			size = 0
		}
		dst = append(dst, "data: "...)
		if needsEscape(l) {
			dst = append(dst, escapeMark)
			for _, c := range l {
				switch c {
				case '\\':
					dst = append(dst, `\\`...)
				case '\r':
					dst = append(dst, `\r`...)
				default:
					dst = append(dst, c)
				}
			}
		} else {
			dst = append(dst, l...)
		}
		dst = append(dst, '\n')
		size += n
		off += int64(len(l)) + 1
	}
	if size >= 0 {
		dst = appendID(dst, b.End) // off, for a batch of whole lines
	}
	return dst
}

func appendID(dst []byte, off int64) []byte {
	dst = append(dst, "id: "...)
	dst = strconv.AppendInt(dst, off, 10)
	return append(dst, "\n\n"...)
}

// AppendEvent appends an event with a single-line data value (JSON).
func AppendEvent(dst []byte, name string, data []byte) []byte {
	dst = append(dst, "event: "...)
	dst = append(dst, name...)
	dst = append(dst, "\ndata: "...)
	dst = append(dst, data...)
	return append(dst, "\n\n"...)
}

// DecodeLine undoes the escaping of one data value of a log event.
func DecodeLine(v string) string {
	if len(v) == 0 || v[0] != escapeMark {
		return v
	}
	var sb strings.Builder
	for i := 1; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
			if v[i] == 'r' {
				sb.WriteByte('\r')
				continue
			}
		}
		sb.WriteByte(v[i])
	}
	return sb.String()
}

// Event is one server-sent event as a client sees it.
type Event struct {
	Name string
	ID   string
	Data []string // one per data field
}

// Lines returns the log lines of a "log" event.
func (e Event) Lines() []string {
	out := make([]string, len(e.Data))
	for i, d := range e.Data {
		out[i] = DecodeLine(d)
	}
	return out
}

// Decoder reads server-sent events the way EventSource does (CR, LF and
// CRLF end a line), but keeps bytes as they are.
type Decoder struct {
	sc *bufio.Scanner
}

// maxEventLine bounds one field line; the longest log line is 4 MiB plus
// its escaping.
const maxEventLine = 16 << 20

// NewDecoder reads events from r.
func NewDecoder(r io.Reader) *Decoder {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxEventLine)
	sc.Split(splitSSELine)
	return &Decoder{sc: sc}
}

func splitSSELine(data []byte, atEOF bool) (int, []byte, error) {
	i := bytes.IndexAny(data, "\r\n")
	if i < 0 {
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	}
	if data[i] == '\n' {
		return i + 1, data[:i], nil
	}
	if i+1 < len(data) {
		if data[i+1] == '\n' {
			return i + 2, data[:i], nil
		}
		return i + 1, data[:i], nil
	}
	if atEOF {
		return i + 1, data[:i], nil
	}
	return 0, nil, nil // a CR at the end: an LF may follow
}

// Next returns the next event; comments and retry fields are skipped.
func (d *Decoder) Next() (Event, error) {
	var ev Event
	seen := false
	for d.sc.Scan() {
		line := d.sc.Bytes()
		if len(line) == 0 {
			if seen {
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			ev.Name, seen = string(value), true
		case "id":
			ev.ID, seen = string(value), true
		case "data":
			ev.Data, seen = append(ev.Data, string(value)), true
		}
	}
	if err := d.sc.Err(); err != nil {
		return ev, err
	}
	if seen {
		return ev, io.ErrUnexpectedEOF
	}
	return ev, io.EOF
}
