// Package sse is the wire format of shiplog's event streams, as the
// server writes it and clients read it: events with their fields, the
// escaping of log lines a client would misread, and a decoder that reads
// the stream as EventSource does but keeps bytes as they are. See the
// README's "Event stream" section.
package sse

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
)

// EscapeMark starts a data value that was escaped. SSE treats CR as a line
// break, so a line holding one cannot go out as it is; the rare lines that
// need it are written as EscapeMark + the line with \ and CR escaped.
const EscapeMark = '\x1e'

// NeedsEscape reports whether a line cannot go out as a data value as it
// is: SSE reads a CR as a line break; some clients drop an empty data value
// (EventSource drops an event whose only data is empty, fetch-event-source
// empty values at an event's start) or strip a byte-order mark; and a line
// that begins with EscapeMark would be taken as escaped.
func NeedsEscape(line []byte) bool {
	return len(line) == 0 || line[0] == EscapeMark || bytes.IndexByte(line, '\r') >= 0 ||
		bytes.HasPrefix(line, []byte("\uFEFF"))
}

// AppendData appends a "data:" field holding line, escaped if it must be.
func AppendData(dst, line []byte) []byte {
	dst = append(dst, "data: "...)
	if NeedsEscape(line) {
		dst = append(dst, EscapeMark)
		for _, c := range line {
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
		dst = append(dst, line...)
	}
	return append(dst, '\n')
}

// AppendID appends the "id:" field that ends an event, and the event.
func AppendID(dst []byte, off int64) []byte {
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
	if len(v) == 0 || v[0] != EscapeMark {
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
