package logfile

import "testing"

// The records round-trip, and their byte layout is the one logs already
// on disk hold (little-endian, line then milliseconds).
func TestRecords(t *testing.T) {
	rec := TimeRecord{Line: 4097, At: 1795537779898}
	b := rec.Encode()
	want := [TimeRecordSize]byte{0x01, 0x10, 0, 0, 0, 0, 0, 0, 0xba, 0x3c, 0x64, 0x0e, 0xa2, 0x01, 0, 0}
	if b != want {
		t.Fatalf("Encode = % x, want % x", b, want)
	}
	if got := DecodeTime(b[:]); got != rec {
		t.Fatalf("DecodeTime = %+v, want %+v", got, rec)
	}
	idx := AppendIndex(AppendIndex(nil, 0), 1<<40+7)
	if len(idx) != 16 || IndexEntry(idx) != 0 || IndexEntry(idx[8:]) != 1<<40+7 {
		t.Fatalf("index % x", idx)
	}
	if got := Sidecars("3.log"); len(got) != 4 || got[0] != "3.log.idx" || got[3] != "3.log.partial" {
		t.Fatalf("Sidecars = %q", got)
	}
}
