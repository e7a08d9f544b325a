package streams

import (
	"bytes"
	"time"

	"github.com/shiplog/shiplog/logfile"
)

// A run's unfinished last line (a progress bar redrawn with \r, a spinner,
// a "Password: " prompt) is not in the log's whole lines yet, so no offset
// names it. Viewers that ask for it get it as a "partial" event with no id:
// it follows the whole lines they have, replaces the partial before it, and
// is replaced by the next log event. Resuming stays exact because a partial
// never moves a viewer's offset.
//
// partialEvery spaces a run's partial events: a job that redraws its line a
// thousand times a second reaches each viewer 20 times.
const partialEvery = 50 * time.Millisecond

// Partial sets the unfinished last line of key's log: text follows the
// whole lines that end at offset at; empty when there is none. Viewers that
// asked for partial lines and have reached at are sent the latest one (its
// logfile.PartialTail), at most every partialEvery. It never blocks on
// viewers.
func (h *Hub) Partial(key string, at int64, text []byte) {
	text = logfile.PartialTail(text)
	b := &Batch{Start: at, End: at, Lines: [][]byte{bytes.Clone(text)}, shared: true, partial: true}
	h.mu.Lock()
	if _, ended := h.ended[key]; ended {
		h.mu.Unlock()
		return
	}
	h.partials[key] = b
	f := h.followers[key]
	h.mu.Unlock()
	if f != nil {
		f.partialChanged()
	}
}

// latestPartial is key's unfinished line as last told, or nil.
func (h *Hub) latestPartial(key string) *Batch {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.partials[key]
}

// partialChanged wakes the follower to send the latest partial line.
func (f *follower) partialChanged() {
	select {
	case f.partialC <- struct{}{}:
	default: // one is on its way: it will read the latest
	}
}

// setPartial makes p the follower's unfinished line; f.mu is held. One at
// the published end goes to its viewers now; one past it waits for the
// lines before it (see sendPartial in publish); an older one is stale.
func (f *follower) setPartial(p *Batch) {
	switch {
	case p == nil || p.Start < f.committed:
		f.part = nil
	case p.Start == f.committed:
		f.part = p
		f.sendPartial()
	default:
		f.part = p
	}
}

// sendPartial sends the follower's unfinished line to the viewers that
// want it and are at its offset, never blocking: a viewer whose channel is
// full is behind, and will be sent the next one. f.mu is held.
func (f *follower) sendPartial() {
	p := f.part
	for s := range f.subs {
		if !s.partials {
			continue
		}
		if s.parked {
			if s.next != p.Start {
				continue
			}
			if s.direct(p) {
				continue
			}
		}
		select {
		case s.c <- p:
		default:
		}
	}
}
