package streams

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
)

// readChunk is how much backlog one file read takes.
const readChunk = 256 << 10

// Cursor is one viewer's position in a log. It reads what lies behind the
// live edge from the file, then takes the follower's batches; both are
// trimmed to its offset, so every line is delivered exactly once.
type Cursor struct {
	hub       *Hub
	key, path string
	next      int64 // offset of the next line to deliver
	final     int64 // >= 0 once the log is known complete at this size
	sub       *subscription
	live      int64 // the subscription's live edge
	pending   *Batch
	file      *os.File
	buf       []byte   // the last file read; its batch's lines point into it
	lines     [][]byte // reused for file batches
	parked    bool
	partials  bool // see WantPartials
}

// WantPartials asks for the log's unfinished last line too, as batches
// with Partial set, whenever the cursor has caught up with the whole lines.
func (c *Cursor) WantPartials() { c.partials = true }

// NewCursor returns a cursor at offset from (a line start) in the log of key
// at path. final is the log's size if the run has finished, else -1.
func (h *Hub) NewCursor(key, path string, from, final int64) *Cursor {
	return &Cursor{hub: h, key: key, path: path, next: from, final: final}
}

// Offset is where the next batch will start.
func (c *Cursor) Offset() int64 { return c.next }

// Close releases the cursor's subscription and file.
func (c *Cursor) Close() {
	if c.sub != nil {
		c.hub.unsubscribe(c.sub)
		c.sub = nil
	}
	c.closeFile()
}

func (c *Cursor) closeFile() {
	if c.file != nil {
		c.file.Close()
		c.file = nil
	}
	c.buf = nil
	c.lines = nil
}

// Next blocks until lines are available and returns them; io.EOF once the
// finished log has been delivered to its end.
func (c *Cursor) Next(ctx context.Context) (*Batch, error) {
	for {
		b, err := c.Poll()
		if b != nil || err != nil {
			return b, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.hub.closing:
		case b, ok := <-c.Wait():
			c.Accept(b, ok)
		}
	}
}

// Poll returns lines available now, nil if there are none yet (then wait on
// Wait and pass what it yields to Accept), or io.EOF at the end. A batch's
// lines are valid until the next Poll, Next or Close: a reader that keeps
// them copies them.
func (c *Cursor) Poll() (*Batch, error) {
	for {
		if c.hub.isClosed() && c.final < 0 {
			// A log known to be complete is still read to its end; only a
			// live one has to wait for the next server.
			size, ok := c.hub.endedSize(c.key)
			if !ok {
				return nil, ErrClosed
			}
			c.final = size
			if c.sub != nil {
				c.hub.unsubscribe(c.sub)
				c.sub = nil
			}
		}
		if b := c.pending; b != nil {
			c.pending = nil
			c.next = b.End
			return b, nil
		}
		if c.final < 0 && c.sub == nil {
			sub, final, err := c.hub.subscribe(c.key, c.path, c.partials)
			if err != nil {
				return nil, err
			}
			c.sub, c.final = sub, final
			if sub != nil {
				c.live = sub.start
			}
		}
		limit := c.final
		if c.sub != nil {
			limit = c.live
		}
		if c.next < limit {
			return c.readFile(limit)
		}
		c.closeFile() // caught up: live batches need no file
		if c.sub == nil {
			return nil, io.EOF
		}
		select {
		case b, ok := <-c.sub.c:
			c.Accept(b, ok)
		default:
			return nil, nil
		}
	}
}

// Wait is the channel to wait on after Poll returned no lines.
func (c *Cursor) Wait() <-chan *Batch {
	if c.sub == nil {
		return nil
	}
	return c.sub.c
}

// park hands the viewer's socket to the follower while the viewer waits:
// live batches are then written to raw by the follower, with no goroutine
// woken per viewer and line. It only parks a cursor that is caught up with
// the follower and has nothing pending, and reports whether it did. Call
// unpark after every wake, before anything else is written to the socket.
func (c *Cursor) park(raw syscall.RawConn, chunked bool, lines *atomic.Int64) bool {
	s := c.sub
	if s == nil || c.pending != nil {
		return false
	}
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[s]; !ok || len(s.c) > 0 || f.committed != c.next {
		return false
	}
	s.parked, s.raw, s.next, s.lines, s.chunked = true, raw, c.next, lines, chunked
	c.parked = true
	return true
}

// unpark takes the socket back from the follower. The cursor moves on past
// what the follower wrote; rest is the part of an event it could not, which
// must be written first.
func (c *Cursor) unpark() (rest []byte) {
	if !c.parked {
		return nil
	}
	c.parked = false
	s := c.sub
	s.f.mu.Lock()
	s.parked, s.raw, s.lines = false, nil, nil
	next, rest := s.next, s.rest
	s.rest = nil
	s.f.mu.Unlock()
	c.next = next
	c.live = max(c.live, next)
	return rest
}

// Accept takes a receive from Wait.
func (c *Cursor) Accept(b *Batch, ok bool) {
	if b == wake {
		return
	}
	if !ok {
		// Ended: either the log is complete, or this viewer was cut off
		// (too slow, or the follower restarted) and resumes from the file.
		if c.sub.final >= 0 {
			c.final = c.sub.final
		}
		c.hub.unsubscribe(c.sub)
		c.sub = nil
		return
	}
	if b.partial {
		// It follows the whole lines the viewer has, or it is stale.
		if b.Start == c.next && c.next >= c.live {
			c.pending = b
		}
		return
	}
	c.live = max(c.live, b.End)
	c.pending = b.from(c.next)
}

// from returns the part of b at or after offset: nil if none, and nil if b
// starts after offset, for the gap must be read from the file (the caller
// has moved its live limit to b.End), never skipped.
func (b *Batch) from(offset int64) *Batch {
	if b.End <= offset || b.Start > offset {
		return nil
	}
	if b.Start == offset {
		return b
	}
	pos := b.Start
	for i, l := range b.Lines {
		pos += int64(len(l)) + 1
		if pos == offset {
			return &Batch{Start: offset, End: b.End, Lines: b.Lines[i+1:]}
		}
	}
	return nil // offset is not a line start in b; cannot happen for offsets we issued
}

// readFile reads whole lines from next up to limit.
func (c *Cursor) readFile(limit int64) (*Batch, error) {
	if c.file == nil {
		f, err := os.Open(c.path)
		if err != nil {
			return nil, fmt.Errorf("open log: %w", err)
		}
		c.file = f
	}
	want := min(limit-c.next, readChunk)
	for {
		if int64(cap(c.buf)) < want {
			c.buf = make([]byte, want)
		}
		buf := c.buf[:want]
		n, err := c.file.ReadAt(buf, c.next)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read log: %w", err)
		}
		buf = buf[:n]
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			buf = buf[:i+1]
			b := &Batch{Start: c.next, End: c.next + int64(len(buf))}
			// The lines point into c.buf, valid until the next read.
			lines := c.lines[:0]
			for data := buf; len(data) > 0; {
				j := bytes.IndexByte(data, '\n')
				lines = append(lines, data[:j:j])
				data = data[j+1:]
			}
			c.lines = lines
			b.Lines = lines
			c.next = b.End
			return b, nil
		}
		if int64(n) < want || c.next+want >= limit {
			return nil, fmt.Errorf("read log: no line end between %d and %d", c.next, limit)
		}
		want = min(limit-c.next, want*2) // one line longer than the chunk
	}
}
