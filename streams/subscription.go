package streams

import (
	"sync/atomic"
	"syscall"
)

// subBuffer is how many batches wait for one subscriber. When it is full the
// subscriber is cut off (its channel closed) and its cursor catches up from
// the file, so a slow viewer never holds up the follower or other viewers.
const subBuffer = 64

// subscription is one viewer's place at a follower.
type subscription struct {
	c     chan *Batch
	start int64 // live batches continue from here
	f     *follower
	// Set before c is closed.
	final  int64 // >= 0: the log is complete at this size
	closed bool  // the hub shut down
	// partials: the viewer asked for the unfinished last line (Partial).
	partials bool

	// While parked (see Cursor.park), under f.mu: the follower writes live
	// batches straight to the viewer's socket instead of waking its
	// goroutine.
	parked  bool
	raw     syscall.RawConn
	next    int64         // where the viewer's stream has got to
	rest    []byte        // the part of an event a partial write left over
	chunked bool          // the socket's body is chunked (see eventWriter)
	lines   *atomic.Int64 // counts lines written, if not nil
}

// wake is sent to a viewer the follower has unparked while its channel
// holds nothing: it has the rest of an event to write.
var wake = &Batch{}

// directMax bounds the events written straight to a parked viewer's socket.
// A bigger batch means a producer faster than the tail: its viewers write
// for themselves, in parallel, rather than one after another from the
// follower.
const directMax = 16 << 10

// direct writes b to parked s without blocking; f.mu is held. It reports
// whether b is dealt with: false leaves s unparked, for b to go through its
// channel.
func (s *subscription) direct(b *Batch) bool {
	if s.next != b.Start || b.End-b.Start > directMax || b.partial && len(b.Lines[0]) > directMax {
		s.parked = false
		return false
	}
	ev := b.event()
	if s.chunked {
		ev = b.chunk()
	}
	var (
		n    int
		werr error
	)
	err := s.raw.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), ev)
		return true // never wait for room: that is the viewer's own job
	})
	if err != nil || werr != nil || n <= 0 {
		s.parked = false
		return false
	}
	s.f.h.direct.Add(1)
	s.next = b.End
	if s.lines != nil && !b.partial {
		s.lines.Add(int64(len(b.Lines)))
	}
	if n < len(ev) {
		s.f.h.partial.Add(1)
		s.parked = false
		s.rest = ev[n:] // the event is shared and never changes
		s.c <- wake     // the channel of a parked viewer is empty
	}
	return true
}

// subscribe attaches to the follower of key, starting it if needed. When the
// log is already known to be complete it returns its final size instead.
// The hub's lock and a follower's are taken one after the other, never one
// inside the other: a follower busy writing to a thousand viewers holds its
// own lock, and must not hold up subscribers of every other run.
func (h *Hub) subscribe(key, path string, partials bool) (*subscription, int64, error) {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, -1, ErrClosed
		}
		if size, ok := h.ended[key]; ok {
			h.mu.Unlock()
			return nil, size, nil
		}
		f, ok := h.followers[key]
		if !ok {
			var err error
			f, err = h.startFollower(key, path)
			if err != nil {
				h.mu.Unlock()
				return nil, -1, err
			}
			h.followers[key] = f
		}
		h.mu.Unlock()

		s := &subscription{c: make(chan *Batch, subBuffer), f: f, final: -1, partials: partials}
		f.mu.Lock()
		if f.gone {
			// It ended between the two locks: once it has left the hub,
			// look again (the log is complete, or a new follower starts).
			f.mu.Unlock()
			<-f.exited
			continue
		}
		s.start = f.committed
		f.subs[s] = struct{}{}
		if p := f.part; partials && p != nil && p.Start == s.start {
			s.c <- p // the channel is new: room for one
		}
		f.mu.Unlock()
		return s, -1, nil
	}
}

// unsubscribe detaches s. The follower keeps following until its run ends
// even with no viewers: nxadm/tail keeps inotify state per file name and
// removes its watch from a goroutine that Stop does not wait for, so a file
// must never be tailed twice in one process.
func (h *Hub) unsubscribe(s *subscription) {
	f := s.f
	f.mu.Lock()
	delete(f.subs, s)
	f.mu.Unlock()
}
