// Package streams carries a run's log file to every viewer: one tail
// follower per live file, shared by all its viewers, a cursor per viewer that
// reads the backlog from the file and then takes live batches, and the SSE
// and long-poll cores built on them. Offsets into the file are the only
// bookkeeping, so nothing is lost or repeated across reconnects.
//
// Two paths keep the live edge cheap. A viewer that is waiting, caught up,
// lends its socket to the follower, which writes each live event to it
// without blocking, so no goroutine wakes per viewer and line; anything the
// socket does not take goes back to the viewer's own goroutine. And when a
// job writes faster than the tail hands over lines one at a time, the
// follower reads the file ahead of the tail in large batches, encoded once
// for every viewer.
package streams

import (
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
)

// ErrClosed is returned once the hub has shut down.
var ErrClosed = errors.New("streams: hub closed")

// maxEnded bounds how many finished logs the hub remembers.
const maxEnded = 4096

// Key names a run's stream.
func Key(id int64) string { return strconv.FormatInt(id, 10) }

// Hub owns the followers of live log files.
type Hub struct {
	log *slog.Logger

	mu        sync.Mutex
	followers map[string]*follower
	ended     map[string]int64  // final sizes of logs that are complete
	partials  map[string]*Batch // unfinished last lines of live logs (see Partial)
	endedFIFO []string
	closed    bool
	closing   chan struct{} // closed by Close: waiting viewers wake
	shut      atomic.Bool   // closed, readable without the lock
	wg        sync.WaitGroup

	direct, partial atomic.Int64 // see DirectWrites
	cutoffs         atomic.Int64 // see Cutoffs
}

// Cutoffs counts viewers cut off for falling subBuffer batches behind; each
// caught up from the file.
func (h *Hub) Cutoffs() int64 { return h.cutoffs.Load() }

// DirectWrites counts the live events followers wrote straight to waiting
// viewers' sockets, and how many of those the socket took only in part
// (the viewer then wrote the rest).
func (h *Hub) DirectWrites() (events, partial int64) {
	return h.direct.Load(), h.partial.Load()
}

// NewHub returns an empty hub.
func NewHub(log *slog.Logger) *Hub {
	return &Hub{log: log, followers: map[string]*follower{}, ended: map[string]int64{}, partials: map[string]*Batch{}, closing: make(chan struct{})}
}

func (h *Hub) isClosed() bool { return h.shut.Load() }

// Closing is closed when the hub shuts down, so long polls can end.
func (h *Hub) Closing() <-chan struct{} { return h.closing }

// endedSize returns the final size of a log known to be complete.
func (h *Hub) endedSize(key string) (int64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	size, ok := h.ended[key]
	return size, ok
}

// Followers is the number of live followers (one per log being watched).
func (h *Hub) Followers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.followers)
}

// Finish records that the log of key is complete at size bytes. Its follower
// delivers up to there, ends its subscriptions and stops.
func (h *Hub) Finish(key string, size int64) {
	h.mu.Lock()
	if _, ok := h.ended[key]; !ok {
		h.ended[key] = size
		h.endedFIFO = append(h.endedFIFO, key)
		if len(h.endedFIFO) > maxEnded {
			delete(h.ended, h.endedFIFO[0])
			h.endedFIFO = h.endedFIFO[1:]
		}
	}
	delete(h.partials, key) // the log has it now
	f := h.followers[key]
	h.mu.Unlock()
	if f != nil {
		f.finish(size) // its own lock, after the hub's (see subscribe)
	}
}

// Close stops every follower; their subscribers see ErrClosed.
func (h *Hub) Close() {
	h.mu.Lock()
	if !h.closed {
		close(h.closing)
	}
	h.closed = true
	h.shut.Store(true)
	for _, f := range h.followers {
		h.retire(f)
		f.halt()
	}
	h.mu.Unlock()
	h.wg.Wait()
}
