package streams

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shiplog/shiplog/sse"
)

const deadline = 20 * time.Second

func quietHub(t *testing.T) *Hub {
	t.Helper()
	h := NewHub(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(h.Close)
	return h
}

// logFile is a log being written the way the runner writes: whole lines
// appended with single writes.
type logFile struct {
	t    *testing.T
	path string
	f    *os.File
	size int64
}

func newLogFile(t *testing.T) *logFile {
	t.Helper()
	path := filepath.Join(t.TempDir(), "1.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &logFile{t: t, path: path, f: f}
}

func (l *logFile) write(s string) {
	n, err := l.f.WriteString(s)
	if err != nil {
		l.t.Error(err)
	}
	l.size += int64(n)
}

// subscribed is a cursor from the start of a live log, caught up and
// subscribed to its follower; closed at the end of the test.
func subscribed(t *testing.T, h *Hub, path string) *Cursor {
	t.Helper()
	c := h.NewCursor("1", path, 0, -1)
	t.Cleanup(c.Close)
	if b, err := c.Poll(); b != nil || err != nil {
		t.Fatal(b, err)
	}
	return c
}

// readAll reads the cursor to EOF, returning every line.
func readAll(t *testing.T, c *Cursor) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var out []string
	for {
		b, err := c.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("after %d lines: %v", len(out), err)
		}
		for _, l := range b.Lines {
			out = append(out, string(l))
		}
	}
}

func readOne(t *testing.T, c *Cursor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := c.Next(ctx); err != nil {
		t.Fatal(err)
	}
}

func numbered(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("line %06d", i)
	}
	return out
}

func checkLines(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	short := func(s string) string {
		if len(s) > 60 {
			return fmt.Sprintf("%.60q… (%d bytes)", s, len(s))
		}
		return strconv.Quote(s)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d = %s, want %s", i, short(got[i]), short(want[i]))
		}
	}
}

func TestLineWrittenInPiecesArrivesOnceWhole(t *testing.T) {
	h := quietHub(t)
	lf := newLogFile(t)
	c := h.NewCursor("1", lf.path, 0, -1)
	defer c.Close()
	lf.write("first\n")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	b, err := c.Next(ctx)
	if err != nil || len(b.Lines) != 1 || string(b.Lines[0]) != "first" {
		t.Fatalf("first batch %v %v", b, err)
	}
	// The scenario: the writer pauses mid-line long enough for the tailer to
	// reach the end of the file and see the first piece alone.
	lf.write("hel")
	time.Sleep(300 * time.Millisecond)
	lf.write("lo world\nlast\n")
	h.Finish("1", lf.size)
	checkLines(t, readAll(t, c), []string{"hello world", "last"})
}

func TestFramingSurvivesAnyBytes(t *testing.T) {
	lines := []string{
		"plain", "", "progress 10%\rprogress 100%", "crlf\r", "\r", "nul\x00byte", "bad utf8 \xff\xfe",
		"\x1eleading mark", `back\slash \r literal`, "  leading spaces", "data: looks like a field", ": comment-like",
		"\x1b[31mred\x1b[0m", strings.Repeat("long ", 100000), "\uFEFFbom first", strings.Repeat("x", MaxEventBytes-10),
	}
	for _, l := range lines {
		for _, batch := range [][]string{{l}, {l, "after"}, {"before", l}} {
			var bl [][]byte
			for _, x := range batch {
				bl = append(bl, []byte(x))
			}
			end := int64(0)
			for _, x := range bl {
				end += int64(len(x)) + 1
			}
			enc := AppendLogEvent(nil, &Batch{Start: 0, End: end, Lines: bl})
			evs := decodeAll(t, enc)
			var got []string
			for i, ev := range evs {
				got = append(got, ev.Lines()...)
				if ev.Name != "log" {
					t.Errorf("%q: event %q", batch, ev.Name)
				}
				// Each event within what common clients read, unless it is
				// one line longer than that.
				if n := len(strings.Join(ev.Data, "\n")); n > MaxEventBytes && len(ev.Data) > 1 {
					t.Errorf("%q: event %d has %d bytes of data in %d lines", batch, i, n, len(ev.Data))
				}
				// What a browser sees: the data fields joined by LF must not
				// be empty, or EventSource drops the event.
				if strings.Join(ev.Data, "\n") == "" || strings.HasPrefix(ev.Data[0], "\uFEFF") {
					t.Errorf("%q: event whose data a client would drop or change", batch)
				}
			}
			if last := evs[len(evs)-1].ID; last != strconv.FormatInt(end, 10) {
				t.Errorf("%q: last id %q, want %d", batch, last, end)
			}
			if fmt.Sprint(got) != fmt.Sprint(batch) {
				t.Errorf("round trip of %.200q gave %.200q", batch, got)
			}
		}
	}
}

// decodeAll reads every event in enc.
func decodeAll(t *testing.T, enc []byte) []sse.Event {
	t.Helper()
	dec := sse.NewDecoder(bytes.NewReader(enc))
	var evs []sse.Event
	for {
		ev, err := dec.Next()
		if errors.Is(err, io.EOF) {
			return evs
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
}

// A viewer reconnecting at random moments, with its last offset, while the
// file is written at full speed, sees every line exactly once, in order.
func TestReconnectsLoseNothingAndRepeatNothing(t *testing.T) {
	h := quietHub(t)
	lf := newLogFile(t)
	want := numbered(50000)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; i < len(want); {
			n := 1 + rand.IntN(64)
			var sb strings.Builder
			for j := 0; j < n && i < len(want); j++ {
				sb.WriteString(want[i])
				sb.WriteByte('\n')
				i++
			}
			lf.write(sb.String())
		}
		h.Finish("1", lf.size)
	}()
	var got []string
	var offset int64
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for reconnects := 0; ; reconnects++ {
		c := h.NewCursor("1", lf.path, offset, -1)
		batches := rand.IntN(20)
		for i := 0; i <= batches; i++ {
			b, err := c.Next(ctx)
			if errors.Is(err, io.EOF) {
				c.Close()
				<-writerDone
				checkLines(t, got, want)
				t.Logf("%d reconnects", reconnects)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Start != offset {
				t.Fatalf("batch starts at %d, viewer was at %d", b.Start, offset)
			}
			for _, l := range b.Lines {
				got = append(got, string(l))
			}
			offset = b.End
		}
		c.Close()
	}
}

// A viewer that stops reading neither blocks the follower nor the others;
// it is cut off and, when it reads again, catches up from the file.
func TestStuckViewerIsCutOffAndCatchesUp(t *testing.T) {
	h := quietHub(t)
	lf := newLogFile(t)
	stuck := subscribed(t, h, lf.path)
	fast := h.NewCursor("1", lf.path, 0, -1)
	defer fast.Close()
	want := numbered(200000)
	go func() {
		for i := 0; i < len(want); i += 100 {
			lf.write(strings.Join(want[i:i+100], "\n") + "\n")
		}
		h.Finish("1", lf.size)
	}()
	checkLines(t, readAll(t, fast), want)
	if _, ok := <-stuck.sub.c; ok {
		// Drain what was buffered; the channel must end closed, not block.
		for range stuck.sub.c {
		}
	}
	checkLines(t, readAll(t, stuck), want)
}

func TestViewersLeaveNoGoroutinesAndFollowersStop(t *testing.T) {
	h := quietHub(t)
	// nxadm/tail starts a process-wide inotify tracker (two goroutines) with
	// its first tail; start it before counting.
	warm := newLogFile(t)
	warm.write("warm\n")
	h.Finish("warm", warm.size)
	wc := h.NewCursor("w", warm.path, 0, -1)
	readOne(t, wc)
	h.Finish("w", warm.size)
	readAll(t, wc)
	wc.Close()
	for until := time.Now().Add(deadline); h.Followers() != 0; {
		if time.Now().After(until) {
			t.Fatal("the warm-up follower did not stop")
		}
		<-time.After(time.Millisecond) // the follower retires on its own goroutine
	}

	lf := newLogFile(t)
	lf.write("hello\n")
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for i := range 300 {
		c := h.NewCursor("1", lf.path, 0, -1)
		if _, err := c.Next(ctx); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			lf.write(fmt.Sprintf("more %d\n", i))
		}
		c.Close()
	}
	// The follower of a live log stays until its run ends (see unsubscribe);
	// the viewers' own goroutines and buffers are gone.
	if n := h.Followers(); n != 1 {
		t.Errorf("%d followers of one live log", n)
	}
	waitGoroutines(t, before+followerGoroutines)

	// Viewers of a run that finishes get their end, and the follower stops.
	var wg sync.WaitGroup
	for range 10 {
		c := h.NewCursor("1", lf.path, 0, -1)
		wg.Add(1)
		go func() { defer wg.Done(); defer c.Close(); readAll(t, c) }()
	}
	lf.write("last\n")
	h.Finish("1", lf.size)
	wg.Wait()
	// A viewer may finish from the file before the follower has read to the
	// end; the follower stops once it has.
	timeout := time.After(deadline)
	for h.Followers() != 0 {
		select {
		case <-timeout:
			t.Fatalf("%d followers after the run ended", h.Followers())
		case <-time.After(10 * time.Millisecond):
		}
	}
	waitGoroutines(t, before)
}

// followerGoroutines is what one live follower runs: its own loop, the
// tail's reader and the tail's inotify watcher.
const followerGoroutines = 3

func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	timeout := time.After(deadline)
	for runtime.NumGoroutine() > want {
		select {
		case <-timeout:
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want %d:\n%s", runtime.NumGoroutine(), want, buf[:runtime.Stack(buf, true)])
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestOffsetsAndTail(t *testing.T) {
	lf := newLogFile(t)
	lf.write("one\ntwo\nthree\npartial")
	end, err := LogEnd(lf.path)
	if err != nil || end != 14 {
		t.Fatalf("LogEnd = %d %v", end, err)
	}
	for off, want := range map[int64]error{0: nil, 4: nil, 14: nil, 2: ErrNotLineStart, 15: ErrBeyondEnd, 22: ErrBeyondEnd, -1: ErrBeyondEnd} {
		if err := CheckOffset(lf.path, off); !errors.Is(err, want) && (want != nil || err != nil) {
			t.Errorf("CheckOffset(%d) = %v, want %v", off, err, want)
		}
	}
	for n, want := range map[int]int64{0: 14, 1: 8, 2: 4, 3: 0, 10: 0} {
		if got, err := TailOffset(lf.path, n, end); err != nil || got != want {
			t.Errorf("TailOffset(%d) = %d %v, want %d", n, got, err, want)
		}
	}
	if n, _ := CountLines(lf.path, 8); n != 2 {
		t.Errorf("CountLines = %d", n)
	}
}

func TestFinishedLogReplaysWithoutFollower(t *testing.T) {
	h := quietHub(t)
	lf := newLogFile(t)
	want := numbered(10000)
	lf.write(strings.Join(want, "\n") + "\n")
	c := h.NewCursor("1", lf.path, 0, lf.size)
	defer c.Close()
	checkLines(t, readAll(t, c), want)
	if h.Followers() != 0 {
		t.Error("a finished log started a follower")
	}
}

// Viewers coming and going on a live log, each writing right after it
// subscribes, never find the follower deaf (nxadm/tail can miss a write that
// lands before its inotify watch is registered; see follower.run).
func TestViewersComingAndGoingStayLive(t *testing.T) {
	h := quietHub(t)
	lf := newLogFile(t)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for i := range 100 {
		c := h.NewCursor("1", lf.path, lf.size, -1) // at the live edge
		if b, err := c.Poll(); b != nil || err != nil {
			t.Fatal(b, err)
		}
		line := fmt.Sprintf("line %d", i)
		lf.write(line + "\n")
		b, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
		if len(b.Lines) != 1 || string(b.Lines[0]) != line {
			t.Fatalf("viewer %d got %q", i, b.Lines)
		}
		c.Close()
	}
}
