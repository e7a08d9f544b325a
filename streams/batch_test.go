package streams

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestBatchFromTrimsOverlapAndRefusesGaps(t *testing.T) {
	// Lines "aa", "bbb", "c" at [10, 19): "aa\nbbb\nc\n".
	b := &Batch{Start: 10, End: 19, Lines: [][]byte{[]byte("aa"), []byte("bbb"), []byte("c")}}
	tests := []struct {
		name   string
		offset int64
		want   string // lines joined by |, "nil" for none
		start  int64
	}{
		{"all new", 10, "aa|bbb|c", 10},
		{"overlap of one line", 13, "bbb|c", 13},
		{"overlap of two lines", 17, "c", 17},
		{"all seen", 19, "nil", 0},
		{"past it", 25, "nil", 0},
		{"gap before it: read the file instead", 7, "nil", 0},
		{"not a line start", 12, "nil", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := b.from(tt.offset)
			if got == nil {
				if tt.want != "nil" {
					t.Errorf("from(%d) = nil, want %s", tt.offset, tt.want)
				}
				return
			}
			var lines []string
			for _, l := range got.Lines {
				lines = append(lines, string(l))
			}
			if s := strings.Join(lines, "|"); s != tt.want || got.Start != tt.start || got.End != 19 {
				t.Errorf("from(%d) = [%d,%d) %s, want [%d,19) %s", tt.offset, got.Start, got.End, s, tt.start, tt.want)
			}
		})
	}
}

// A live batch that starts past where the viewer is (it missed some) makes
// the viewer read the gap from the file, in order, nothing skipped.
func TestCursorReadsAGapFromTheFile(t *testing.T) {
	h := quietHub(t)
	lf := newLogFile(t)
	c := subscribed(t, h, lf.path)
	lf.write("one\ntwo\nthree\n")
	// A batch with the last line only, as if the first two went missing.
	c.Accept(&Batch{Start: 8, End: 14, Lines: [][]byte{[]byte("three")}}, true)
	var got []string
	for len(got) < 3 {
		b, err := c.Poll()
		if err != nil {
			t.Fatal(err)
		}
		if b == nil {
			break
		}
		for _, l := range b.Lines {
			got = append(got, string(l))
		}
	}
	if fmt.Sprint(got) != "[one two three]" {
		t.Errorf("got %q", got)
	}
}

// A viewer whose channel is full is cut off at once (its channel closed,
// while the log goes on), not silently left without a batch; it then
// catches up from the file with every line.
func TestFullViewerIsCutOffNotSkipped(t *testing.T) {
	h := quietHub(t)
	lf := newLogFile(t)
	stuck := subscribed(t, h, lf.path)
	sub := stuck.sub
	fast := h.NewCursor("1", lf.path, 0, -1)
	defer fast.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	// One batch per write: the fast viewer has each before the next.
	want := numbered(2 * subBuffer)
	for _, l := range want {
		lf.write(l + "\n")
		if _, err := fast.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The stuck viewer's channel holds what fitted, then is closed: cut off
	// while the log is still live.
	var got []string
	queued := 0
	for cut := false; !cut; {
		select {
		case b, ok := <-sub.c:
			if !ok {
				cut = true
				break
			}
			queued++
			stuck.Accept(b, ok)
			p, err := stuck.Poll()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range p.Lines {
				got = append(got, string(l))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("after %d batches the full viewer was neither cut off nor sent more", queued)
		}
	}
	if queued > subBuffer {
		t.Errorf("a full viewer was sent %d batches, more than its buffer of %d", queued, subBuffer)
	}
	stuck.Accept(nil, false)
	h.Finish("1", lf.size)
	checkLines(t, append(got, readAll(t, stuck)...), want)
}
