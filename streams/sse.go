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

func needsEscape(line []byte, alone bool) bool {
	return (len(line) > 0 && line[0] == escapeMark) || bytes.IndexByte(line, '\r') >= 0 ||
		// EventSource drops an event whose data is empty, so a batch of one
		// empty line is sent escaped.
		(alone && len(line) == 0)
}

// AppendLogEvent appends b as one "log" event: a data field per line, the id
// the offset just after its last line.
func AppendLogEvent(dst []byte, b *Batch) []byte {
	dst = append(dst, "event: log\nid: "...)
	dst = strconv.AppendInt(dst, b.End, 10)
	dst = append(dst, '\n')
	for _, l := range b.Lines {
		dst = append(dst, "data: "...)
		if needsEscape(l, len(b.Lines) == 1) {
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
	}
	return append(dst, '\n')
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
