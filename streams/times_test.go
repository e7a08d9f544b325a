package streams

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"
)

func writeTimes(t *testing.T, logPath string, recs ...LineTime) {
	t.Helper()
	var b []byte
	for _, r := range recs {
		b = binary.LittleEndian.AppendUint64(b, uint64(r.Line))
		b = binary.LittleEndian.AppendUint64(b, uint64(r.At))
	}
	if err := os.WriteFile(logPath+".times", b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// 2026-11-23T10:00:00Z and some milliseconds.
const t0 = int64(1795428000000)

func TestLineTimes(t *testing.T) {
	lf := newLogFile(t)
	lf.write(strings.Repeat("x\n", 100))
	recs := []LineTime{{Line: 1, At: t0}, {Line: 4, At: t0 + 5}, {Line: 10, At: t0 + 7}, {Line: 50, At: t0 + 1000}}
	writeTimes(t, lf.path, recs...)
	tests := []struct {
		from, to int64
		want     []LineTime
	}{
		{1, 100, recs},
		{1, 1, recs[:1]},
		{3, 4, recs[:2]},
		{5, 9, recs[1:2]},   // the record in force at 5 starts at 4
		{11, 49, recs[2:3]}, // all inside one record
		{60, 100, recs[3:]},
	}
	for _, tc := range tests {
		got, err := LineTimes(lf.path, tc.from, tc.to)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("LineTimes(%d, %d) = %v, %v; want %v", tc.from, tc.to, got, err, tc.want)
		}
	}

	// Records that go backwards are damage: what came before them stands.
	writeTimes(t, lf.path, LineTime{Line: 1, At: t0}, LineTime{Line: 8, At: t0 + 1}, LineTime{Line: 3, At: t0 + 2}, LineTime{Line: 20, At: t0 + 3})
	if got, _ := LineTimes(lf.path, 1, 100); fmt.Sprint(got) != fmt.Sprint([]LineTime{{Line: 1, At: t0}, {Line: 8, At: t0 + 1}}) {
		t.Errorf("damaged times: %v", got)
	}
	// A log from before line times: none, and no error.
	os.Remove(lf.path + ".times")
	if got, err := LineTimes(lf.path, 1, 100); got != nil || err != nil {
		t.Errorf("no times file: %v, %v", got, err)
	}
}

func TestWriteStamped(t *testing.T) {
	lf := newLogFile(t)
	long := strings.Repeat("y", 300<<10) // longer than the read buffer
	lf.write("one\ntwo\n" + long + "\nfour\nfive\n")
	writeTimes(t, lf.path, LineTime{Line: 1, At: t0 + 1}, LineTime{Line: 3, At: t0 + 1500}, LineTime{Line: 5, At: t0 + 61_000})
	stamp := func(ms int64) string {
		return "2026-11-23T10:" + fmt.Sprintf("%02d:%06.3f", ms/60000, float64(ms%60000)/1000) + "Z "
	}

	var buf bytes.Buffer
	if err := WriteStamped(&buf, lf.path, 0, lf.size, 1); err != nil {
		t.Fatal(err)
	}
	want := stamp(1) + "one\n" + stamp(1) + "two\n" + stamp(1500) + long + "\n" + stamp(1500) + "four\n" + stamp(61000) + "five\n"
	if buf.String() != want {
		t.Errorf("stamped log differs:\n got %.200q\nwant %.200q", buf.String(), want)
	}

	// From line 4 on, as a long poll after an offset serves it.
	from := int64(len("one\ntwo\n" + long + "\n"))
	buf.Reset()
	if err := WriteStamped(&buf, lf.path, from, lf.size, 4); err != nil {
		t.Fatal(err)
	}
	if want := stamp(1500) + "four\n" + stamp(61000) + "five\n"; buf.String() != want {
		t.Errorf("from line 4:\n got %q\nwant %q", buf.String(), want)
	}

	// Without times each line says so, in the same width.
	os.Remove(lf.path + ".times")
	buf.Reset()
	if err := WriteStamped(&buf, lf.path, from, lf.size, 4); err != nil {
		t.Fatal(err)
	}
	blank := "-" + strings.Repeat(" ", 24)
	if want := blank + "four\n" + blank + "five\n"; buf.String() != want {
		t.Errorf("without times:\n got %q\nwant %q", buf.String(), want)
	}
	if len(stamp(1)) != 25 {
		t.Errorf("a stamp is %d bytes, want 25", len(stamp(1)))
	}
}
