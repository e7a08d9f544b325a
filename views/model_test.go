package views

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0.0s"},
		{40 * time.Millisecond, "0.0s"},
		{360 * time.Millisecond, "0.4s"},
		{9940 * time.Millisecond, "9.9s"},
		{9960 * time.Millisecond, "10s"},
		{12 * time.Second, "12s"},
		{64 * time.Second, "1m 04s"},
		{2*time.Hour + 5*time.Minute, "2h 05m"},
	} {
		if got := Duration(tc.d); got != tc.want {
			t.Errorf("Duration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0 lines", 1: "1 line", 2: "2 lines", 1500: "1500 lines"} {
		if got := Count(n, "line"); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPlainLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"\x1b[1;32mok\x1b[0m done", "ok done"},
		{"bar 10%\rbar 55%\rbar 100%", "bar 100%"},
		{"evil\u202Eexe.live", "evil<U+202E>exe.live"},
		{"a\u200Bb\u2066c\u2069", "a<U+200B>b<U+2066>c<U+2069>"},
		{"family 👨\u200D👩\u200D👧 stays", "family 👨\u200D👩\u200D👧 stays"}, // joiners are kept
	} {
		if got := PlainLine(tc.in); got != tc.want {
			t.Errorf("PlainLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSignalName(t *testing.T) {
	for code, want := range map[int]string{0: "", 1: "", 130: "SIGINT", 137: "SIGKILL", 143: "SIGTERM", 200: ""} {
		if got := signalName(code); got != want {
			t.Errorf("signalName(%d) = %q, want %q", code, got, want)
		}
	}
}
