package sse

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// A line goes out as one data field and comes back as it was, whatever
// bytes it holds, and only the lines that need it are escaped.
func TestDataRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		line    string
		escaped bool
	}{
		{"plain line", false},
		{"", true},
		{"a\rb", true},
		{"\uFEFFbom", true},
		{"\x1estarts with the mark", true},
		{`back\slash \r not a CR`, false},
		{"inner \uFEFF is fine", false},
	} {
		enc := AppendData(nil, []byte(tc.line))
		value, ok := strings.CutPrefix(string(enc), "data: ")
		if !ok || !strings.HasSuffix(value, "\n") || strings.ContainsAny(value[:len(value)-1], "\r\n") {
			t.Errorf("%q: field %q", tc.line, enc)
			continue
		}
		value = value[:len(value)-1]
		if got := value != tc.line; got != tc.escaped {
			t.Errorf("%q: escaped %v, want %v", tc.line, got, tc.escaped)
		}
		if got := DecodeLine(value); got != tc.line {
			t.Errorf("%q: decoded as %q", tc.line, got)
		}
	}
}

// The decoder ends lines at CR, LF and CRLF as EventSource does, skips
// comments and retry fields, and says when the stream ends inside an event.
func TestDecoder(t *testing.T) {
	stream := "retry: 2000\r\n\r\n: comment\nevent: log\rdata: a\r\ndata: b\nid: 7\n\nevent: end\ndata: {}\n\nevent: log\ndata: cut"
	dec := NewDecoder(strings.NewReader(stream))
	var got []string
	for {
		ev, err := dec.Next()
		if err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("end of a cut stream: %v", err)
			}
			break
		}
		got = append(got, ev.Name+"/"+ev.ID+"/"+strings.Join(ev.Lines(), ","))
	}
	if want := "log/7/a,b end//{}"; strings.Join(got, " ") != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if _, err := NewDecoder(strings.NewReader("event: end\n\n")).Next(); err != nil {
		t.Fatal(err)
	}
}
