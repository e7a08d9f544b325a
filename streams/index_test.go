package streams

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/logfile"
)

func TestLineIndexWithAndWithoutIndexFile(t *testing.T) {
	lf := newLogFile(t)
	const n = 3*logfile.IndexEvery + 100
	var offsets []int64
	var sb strings.Builder
	for i := 1; i <= n; i++ {
		offsets = append(offsets, int64(sb.Len()))
		fmt.Fprintf(&sb, "line %d %s\n", i, strings.Repeat("x", i%7))
	}
	lf.write(sb.String())
	end := lf.size
	check := func(t *testing.T) {
		t.Helper()
		for _, line := range []int64{1, 2, logfile.IndexEvery, logfile.IndexEvery + 1, 2*logfile.IndexEvery + 17, n} {
			off, err := LineOffset(lf.path, line, end)
			if err != nil || off != offsets[line-1] {
				t.Errorf("LineOffset(%d) = %d %v, want %d", line, off, err, offsets[line-1])
			}
			if got, err := LineNumber(lf.path, offsets[line-1]); err != nil || got != line {
				t.Errorf("LineNumber(%d) = %d %v, want %d", offsets[line-1], got, err, line)
			}
		}
		if _, err := LineOffset(lf.path, n+1, end); !errors.Is(err, ErrNoSuchLine) {
			t.Errorf("line past the end: %v", err)
		}
		if got, _ := LineNumber(lf.path, end); got != n+1 {
			t.Errorf("LineNumber(end) = %d", got)
		}
	}
	t.Run("rebuilt by scanning", check)
	// An index as the runner writes it.
	var idx []byte
	for k := 0; k*logfile.IndexEvery < n; k++ {
		idx = binary.LittleEndian.AppendUint64(idx, uint64(offsets[k*logfile.IndexEvery]))
	}
	if err := os.WriteFile(lf.path+".idx", idx, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("from the index", check)
	// A damaged index is not trusted past the damage.
	binary.LittleEndian.PutUint64(idx[8:], 3)
	os.WriteFile(lf.path+".idx", idx, 0o644)
	t.Run("damaged index", check)
}

func TestContainsFoldASCII(t *testing.T) {
	tests := []struct {
		s, q string
		want bool
	}{
		{"Hello World", "world", true}, {"HELLO", "hello", true}, {"hel", "hello", false},
		{"xxHeLLoxx", "hello", true}, {"", "a", false}, {"abc", "", true}, {"a-b", "-b", true},
		{"\\xff\\xfeBAD", "bad", true}, {"Zz", "zz", true}, {"@[", "`{", false},
	}
	for _, tt := range tests {
		if got := containsFoldASCII([]byte(tt.s), []byte(tt.q)); got != tt.want {
			t.Errorf("containsFoldASCII(%q, %q) = %v", tt.s, tt.q, got)
		}
	}
}
