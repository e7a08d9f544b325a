package streams

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/sse"
)

// hijackWriter is a response writer whose connection can be taken over, as
// net/http's is for HTTP/1.
type hijackWriter struct {
	conn net.Conn
	h    http.Header
}

func (w *hijackWriter) Header() http.Header         { return w.h }
func (w *hijackWriter) Write(p []byte) (int, error) { return w.conn.Write(p) }
func (w *hijackWriter) WriteHeader(int)             {}
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

// waitUntil waits for cond, checked every millisecond, up to the deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(deadline)
	for !cond() {
		select {
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(time.Millisecond):
		}
	}
}

// readStream reads an event stream's log lines up to its end event.
func readStream(t *testing.T, r *bufio.Reader) []string {
	t.Helper()
	var lines []string
	event := ""
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d lines: %v", len(lines), err)
		}
		l = strings.TrimSuffix(l, "\n")
		switch {
		case strings.HasPrefix(l, "event: "):
			event = strings.TrimPrefix(l, "event: ")
		case strings.HasPrefix(l, "data: ") && event == "log":
			lines = append(lines, sse.DecodeLine(strings.TrimPrefix(l, "data: ")))
		case l == "" && event == "end":
			return lines
		}
	}
}

// A live event bigger than what the viewer's socket can take is written by
// the follower in part; the viewer writes the rest before anything else, so
// the stream stays whole and in order.
func TestDirectWriteTakenInPartIsFinishedByTheViewer(t *testing.T) {
	h := quietHub(t)
	lf := newLogFile(t)
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.(*net.UnixConn).SetWriteBuffer(1); err != nil { // the kernel's least, a few KiB
		t.Fatal(err)
	}
	cur := h.NewCursor("1", lf.path, 0, -1)
	defer cur.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	status := func(context.Context) ([]byte, bool, <-chan struct{}, error) { return []byte(`{}`), false, nil, nil }
	served := make(chan error, 1)
	go func() {
		served <- ServeEvents(ctx, &hijackWriter{conn: srv, h: http.Header{}}, cur, status, EventOptions{})
	}()
	r := bufio.NewReader(client)
	if head, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(head, "HTTP/1.1 200") {
		t.Fatalf("%q %v", head, err)
	}
	waitUntil(t, "the viewer to wait with its socket lent to the follower", func() bool {
		h.mu.Lock()
		f := h.followers["1"]
		h.mu.Unlock()
		if f == nil {
			return false
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for s := range f.subs {
			return s.parked
		}
		return false
	})
	// Lines of 12 KiB: each is one event, small enough to be written
	// directly, too big for the socket's buffer while nobody reads.
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("%02d %s", i, strings.Repeat(string(rune('a'+i)), 12<<10)))
	}
	lf.write(want[0] + "\n")
	waitUntil(t, "a direct write taken in part", func() bool { _, partial := h.DirectWrites(); return partial > 0 })
	for _, l := range want[1:] {
		lf.write(l + "\n")
	}
	h.Finish("1", lf.size)
	checkLines(t, readStream(t, r), want)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// A sealed batch keeps its lines when the buffer they were read into is
// reused, escaped ones included.
func TestSealedBatchOwnsItsLines(t *testing.T) {
	for _, lines := range [][]string{
		{"plain", "", "progress 10%\r100%", "\x1emark", `back\slash`, "nul\x00 and \xff"},
		{""}, // alone and empty: sent escaped
		{"one"},
	} {
		scratch := []byte(strings.Join(lines, "\n") + "\n")
		b := &Batch{Start: 100, shared: true}
		b.End = b.Start
		for data := scratch; len(data) > 0; {
			i := bytes.IndexByte(data, '\n')
			b.Lines = append(b.Lines, data[:i:i])
			b.End += int64(i) + 1
			data = data[i+1:]
		}
		want := AppendLogEvent(nil, b)
		b.seal()
		for i := range scratch {
			scratch[i] = '#'
		}
		var got []string
		for _, l := range b.Lines {
			got = append(got, string(l))
		}
		checkLines(t, got, lines)
		if !bytes.Equal(b.event(), want) {
			t.Fatalf("event %q, want %q", b.event(), want)
		}
	}
}
