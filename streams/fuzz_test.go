package streams

import (
	"bytes"
	"testing"
)

// FuzzLogEvent: any bytes in a line (but the newline that ends it) come out
// framed correctly and decode to the same line.
func FuzzLogEvent(f *testing.F) {
	for _, s := range []string{"", "plain", "a\rb", "\r\n", "\x1e", "\x1e\\r", "\x00\xff", "data: x", ":", "\\"} {
		f.Add([]byte(s), []byte("next"))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		a = bytes.ReplaceAll(a, []byte("\n"), nil)
		b = bytes.ReplaceAll(b, []byte("\n"), nil)
		for _, lines := range [][][]byte{{a}, {a, b}} {
			enc := AppendLogEvent(nil, &Batch{End: 7, Lines: lines})
			evs := decodeAll(t, enc)
			var got []string
			for _, ev := range evs {
				got = append(got, ev.Lines()...)
			}
			ev := evs[len(evs)-1]
			if len(got) != len(lines) {
				t.Fatalf("%q: %d lines back", lines, len(got))
			}
			for i := range lines {
				if got[i] != string(lines[i]) {
					t.Fatalf("line %q came back %q", lines[i], got[i])
				}
			}
			if ev.ID != "7" || ev.Name != "log" {
				t.Fatalf("event %q id %q", ev.Name, ev.ID)
			}
		}
	})
}
