package streams

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/logfile"
	"github.com/shiplog/shiplog/sse"
)

// next returns the cursor's next batch: "L:" and its lines, or "P:" and
// the partial line, with its offsets.
func next(t *testing.T, c *Cursor) (kind string, text string, start, end int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	b, err := c.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lines := make([]string, len(b.Lines))
	for i, l := range b.Lines {
		lines[i] = string(l)
	}
	if b.partial {
		return "P", lines[0], b.Start, b.End
	}
	return "L", strings.Join(lines, "|"), b.Start, b.End
}

// The unfinished line reaches a viewer that asked for it after the whole
// lines before it, never moves its offset, is replaced by the lines that
// complete it, and is sent at once to a viewer that joins while it shows.
func TestPartialLineFollowsTheWholeLines(t *testing.T) {
	h := quietHub(t)
	lf := newLogFile(t)
	c := h.NewCursor("1", lf.path, 0, -1)
	c.WantPartials()
	t.Cleanup(c.Close)
	plain := subscribed(t, h, lf.path)

	// Told before the follower has the line it follows: it waits for it.
	lf.write("a\n")
	h.Partial("1", 2, []byte("Pass"))
	if k, text, s, e := next(t, c); k != "L" || text != "a" || s != 0 || e != 2 {
		t.Fatalf("first: %s %q [%d,%d), want the line a", k, text, s, e)
	}
	if k, text, s, e := next(t, c); k != "P" || text != "Pass" || s != 2 || e != 2 {
		t.Fatalf("second: %s %q [%d,%d), want partial Pass at 2", k, text, s, e)
	}
	if c.Offset() != 2 {
		t.Fatalf("offset %d after a partial line, want 2", c.Offset())
	}
	h.Partial("1", 2, []byte("Password: "))
	if k, text, _, _ := next(t, c); k != "P" || text != "Password: " {
		t.Fatalf("%s %q, want the new partial", k, text)
	}

	// A viewer joining now is sent it once caught up.
	late := h.NewCursor("1", lf.path, 0, -1)
	late.WantPartials()
	t.Cleanup(late.Close)
	if k, text, _, _ := next(t, late); k != "L" || text != "a" {
		t.Fatalf("late viewer: %s %q, want the line a", k, text)
	}
	if k, text, s, _ := next(t, late); k != "P" || text != "Password: " || s != 2 {
		t.Fatalf("late viewer: %s %q at %d, want the partial at 2", k, text, s)
	}

	// The line completes: the lines, then the (empty) partial after them.
	lf.write("Password: ok\nb\n")
	h.Partial("1", lf.size, nil)
	if k, text, _, e := next(t, c); k != "L" || text != "Password: ok|b" || e != lf.size {
		t.Fatalf("%s %q to %d, want the two lines", k, text, e)
	}
	if k, text, s, _ := next(t, c); k != "P" || text != "" || s != lf.size {
		t.Fatalf("%s %q at %d, want an empty partial at %d", k, text, s, lf.size)
	}

	// A viewer that did not ask sees lines only.
	for _, want := range []string{"a", "Password: ok|b"} {
		if k, text, _, _ := next(t, plain); k != "L" || text != want {
			t.Fatalf("plain viewer: %s %q, want the line(s) %q", k, text, want)
		}
	}
	h.Finish("1", lf.size)
	if b, err := plain.Next(context.Background()); err == nil {
		t.Fatalf("plain viewer got %+v after the end, want EOF", b)
	}
}

// A partial line for an offset the viewer has passed (the lines that
// completed it came first) is stale: neither the follower nor the cursor
// lets it reach the viewer.
func TestStalePartialLineIsDropped(t *testing.T) {
	h := quietHub(t)
	lf := newLogFile(t)
	c := h.NewCursor("1", lf.path, 0, -1)
	c.WantPartials()
	t.Cleanup(c.Close)
	if b, err := c.Poll(); b != nil || err != nil {
		t.Fatal(b, err)
	}
	lf.write("one\ntwo\n")
	if k, text, _, _ := next(t, c); k != "L" || text != "one|two" {
		t.Fatalf("%s %q", k, text)
	}
	stale := &Batch{Start: 4, End: 4, Lines: [][]byte{[]byte("tw")}, shared: true, partial: true}
	h.mu.Lock()
	f := h.followers["1"]
	h.mu.Unlock()
	f.mu.Lock()
	f.setPartial(stale) // told before "two" was whole, handled after
	kept, queued := f.part, len(c.sub.c)
	f.mu.Unlock()
	if kept != nil || queued != 0 {
		t.Fatalf("the follower kept %v and queued %d batches for a stale partial line", kept, queued)
	}
	c.Accept(stale, true)
	if c.pending != nil {
		t.Fatal("the cursor took a partial line for an offset it has passed")
	}
	h.Partial("1", lf.size, []byte("fo"))
	if k, text, s, _ := next(t, c); k != "P" || text != "fo" || s != 8 {
		t.Fatalf("%s %q at %d, want the fresh partial at 8", k, text, s)
	}
}

// On the wire a partial line is a "partial" event with no id, so a
// client's Last-Event-ID stays at the last whole line; an unfinished line
// longer than logfile.MaxPartialShown is sent from its last redraw.
func TestPartialEventOnTheWire(t *testing.T) {
	h := quietHub(t)
	lf := newLogFile(t)
	lf.write("x\n")
	h.Partial("1", 2, []byte("10%\r55%"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := h.NewCursor("1", lf.path, 0, -1)
		defer c.Close()
		if r.URL.Query().Get("partial") == "1" {
			c.WantPartials()
		}
		status := func(context.Context) ([]byte, bool, <-chan struct{}, error) { return []byte(`{}`), false, nil, nil }
		_ = ServeEvents(r.Context(), w, c, status, EventOptions{})
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"?partial=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := sse.NewDecoder(resp.Body)
	want := func(name, id string, data ...string) {
		t.Helper()
		for {
			ev, err := dec.Next()
			if err != nil {
				t.Fatal(err)
			}
			if ev.Name == "status" {
				continue
			}
			if got := strings.Join(ev.Lines(), "|"); ev.Name != name || ev.ID != id || got != strings.Join(data, "|") {
				t.Fatalf("got %s id %q %.80q (%d bytes), want %s id %q %.80q", ev.Name, ev.ID, got, len(got), name, id, data)
			}
			return
		}
	}
	want("log", "2", "x")
	want("partial", "", "10%\r55%")
	long := strings.Repeat("#", logfile.MaxPartialShown) + "\r" + strings.Repeat("=", 100)
	h.Partial("1", 2, []byte(long))
	want("partial", "", "\r"+strings.Repeat("=", 100))
	lf.write("done\n")
	want("log", "7", "done")
}
