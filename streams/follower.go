package streams

import (
	"bytes"
	"errors"
	"io"
	"log"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nxadm/tail"
)

// stallCheck is how often a follower checks that its tail has not missed
// a change.
const stallCheck = 250 * time.Millisecond

// While a job writes faster than the tail hands over lines, the follower
// reads the file directly every aheadPoll, until it has found nothing new
// aheadQuiet times in a row, or once if the tail is less than aheadNear
// behind: then catching up costs the tail little, and its notice of the
// next write comes sooner than the next poll.
const (
	aheadPoll  = time.Millisecond
	aheadQuiet = 10
	aheadNear  = 64 << 10
)

// retire removes f from the live followers; h.mu is held.
func (h *Hub) retire(f *follower) {
	if h.followers[f.key] == f {
		delete(h.followers, f.key)
	}
}

// follower owns one nxadm/tail of one log file and publishes its lines.
type follower struct {
	h        *Hub
	key      string
	path     string
	t        *tail.Tail
	file     *os.File // for reading ahead of the tail
	scratch  []byte   // what it reads ahead into
	ahead    bool     // the file is ahead of the tail: read it directly
	tailAt   int64    // the end of the tail's last line; committed may be ahead
	stop     chan struct{}
	stopOnce sync.Once
	finishC  chan struct{}
	partialC chan struct{} // the hub has a new partial line for it
	exited   chan struct{} // closed once run has returned and left the hub

	mu        sync.Mutex
	gone      bool // ended for good: subscribers must look again
	subs      map[*subscription]struct{}
	committed int64  // end of the last line published; written (locked) and read (not) only by run
	final     int64  // -1 until the run has finished
	part      *Batch // the unfinished line after the published lines, or nil
}

// lastLineEnd returns the offset just after the last newline in the file:
// where whole lines end, whatever is being written after it.
func lastLineEnd(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := st.Size()
	buf := make([]byte, 64<<10)
	for end > 0 {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] == '\n' {
				return end - n + i + 1, nil
			}
		}
		end -= n
	}
	return 0, nil
}

// h.mu is held.
func (h *Hub) startFollower(key, path string) (*follower, error) {
	start, err := lastLineEnd(path)
	if err != nil {
		return nil, err
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	t, err := tail.TailFile(path, tail.Config{
		Location:      &tail.SeekInfo{Offset: start, Whence: io.SeekStart},
		Follow:        true,
		MustExist:     true,
		CompleteLines: true, // a line written in pieces comes out once, whole
		Logger:        log.New(io.Discard, "", 0),
	})
	if err != nil {
		file.Close()
		return nil, err
	}
	f := &follower{
		h: h, key: key, path: path, t: t, file: file, stop: make(chan struct{}), finishC: make(chan struct{}, 1), partialC: make(chan struct{}, 1), exited: make(chan struct{}),
		subs: map[*subscription]struct{}{}, committed: start, tailAt: start, final: -1,
	}
	if _, ok := h.partials[key]; ok {
		f.partialChanged()
	}
	h.wg.Add(1)
	go f.run()
	return f, nil
}

func (f *follower) halt() { f.stopOnce.Do(func() { close(f.stop) }) }

func (f *follower) finish(size int64) {
	f.mu.Lock()
	f.final = size
	f.mu.Unlock()
	select {
	case f.finishC <- struct{}{}:
	default:
	}
}

func (f *follower) run() {
	defer f.h.wg.Done()
	defer func() {
		// No Cleanup: the tail's own watcher goroutine removes the inotify
		// watch, and a second removal would corrupt the shared count.
		_ = f.t.Stop()
		f.file.Close()
		f.mu.Lock()
		f.gone = true // every way out has set it already, with its last end
		f.mu.Unlock()
		f.h.mu.Lock()
		f.h.retire(f)
		f.h.mu.Unlock()
		close(f.exited)
	}()
	// nxadm/tail registers its inotify watch only after a read hits the end
	// of the file, and does not look again: a write in between goes unseen
	// until the next one. A stalled follower nudges it (IN_ATTRIB counts as a
	// change for the tail).
	check := time.NewTicker(stallCheck)
	defer check.Stop()
	var seen int64 = -1
	poll := time.NewTimer(aheadPoll)
	defer poll.Stop()
	idle := 0
	// Partial lines go out at most every partialEvery.
	cool := time.NewTimer(0)
	defer cool.Stop()
	cooling := true
	for {
		if f.complete() {
			return
		}
		// While the file is ahead of the tail, it is read directly, polled
		// every aheadPoll, and the tail is left waiting to hand over a line
		// (at no cost) until the file has been quiet a while. Then the tail
		// catches up, its lines already published are skipped, and polling
		// goes on until it has.
		var (
			lines  <-chan *tail.Line
			polled <-chan time.Time
		)
		if !f.ahead {
			lines = f.t.Lines
		}
		if f.tailAt < f.committed {
			polled = poll.C
		}
		var partials <-chan struct{}
		if !cooling {
			partials = f.partialC
		}
		select {
		case <-cool.C:
			cooling = false
		case <-partials:
			p := f.h.latestPartial(f.key)
			f.mu.Lock()
			f.setPartial(p)
			f.mu.Unlock()
			cooling = true
			cool.Reset(partialEvery)
		case <-check.C:
			if f.committed == seen {
				if st, err := os.Stat(f.path); err == nil && st.Size() > f.committed {
					now := time.Now()
					_ = os.Chtimes(f.path, now, now)
				}
			}
			seen = f.committed
		case <-f.stop:
			f.mu.Lock()
			f.gone = true
			f.end(false)
			f.mu.Unlock()
			return
		case <-f.finishC:
		case <-polled:
			b := &Batch{Start: f.committed, End: f.committed, shared: true}
			if f.readAhead(b) {
				f.publish(b)
				idle = 0
			} else if idle++; idle >= aheadQuiet || f.committed-f.tailAt < aheadNear {
				f.ahead = false
			}
			poll.Reset(aheadPoll)
		case line, ok := <-lines:
			if !ok {
				f.h.log.Warn("log follower stopped", "key", f.key, "err", f.t.Err())
				f.mu.Lock()
				f.gone = true
				f.end(false)
				f.mu.Unlock()
				return
			}
			if line.Err == nil && line.SeekInfo.Offset <= f.committed {
				f.tailAt = line.SeekInfo.Offset
				continue // published already, from the file
			}
			f.collect(line)
			if f.ahead {
				idle = 0
				poll.Reset(aheadPoll)
			}
		}
	}
}

// collect turns line, and the lines ready behind it, into one batch. When
// the job writes faster than the tail hands over lines one at a time, the
// batch is filled from the file: one read, shared by every viewer, rather
// than a line per hand-off. The tail's own copies of those lines are then
// skipped by their offsets.
func (f *follower) collect(first *tail.Line) {
	b := &Batch{Start: f.committed, End: f.committed, shared: true}
	size := 0
	add := func(l *tail.Line) {
		if l.Err != nil {
			f.h.log.Warn("log follower", "key", f.key, "err", l.Err)
			return
		}
		f.tailAt = l.SeekInfo.Offset
		if l.SeekInfo.Offset <= b.End {
			return // read from the file already
		}
		end := b.End + int64(len(l.Text)) + 1
		if end != l.SeekInfo.Offset {
			// Not where the last line ended: cannot happen with CompleteLines,
			// but if it does, publish what is sound, move to the tail's offset
			// and let every viewer find its exact place from the file.
			f.h.log.Warn("log follower out of step", "key", f.key, "want", end, "got", l.SeekInfo.Offset)
			f.publish(b)
			f.mu.Lock()
			f.committed = l.SeekInfo.Offset
			f.end(false)
			f.mu.Unlock()
			b = &Batch{Start: l.SeekInfo.Offset, End: l.SeekInfo.Offset, shared: true} // the old one is in viewers' hands
			size = 0
			return
		}
		b.Lines = append(b.Lines, []byte(l.Text))
		b.End = end
		size += len(l.Text) + 1
	}
	add(first)
	for len(b.Lines) < maxBatchLines && size < maxBatchBytes {
		select {
		case l, open := <-f.t.Lines:
			if !open {
				f.publish(b)
				return
			}
			add(l)
			continue
		default:
		}
		break
	}
	if len(b.Lines) < maxBatchLines && size < maxBatchBytes {
		f.ahead = f.readAhead(b)
	}
	f.publish(b)
}

// readAhead adds to b the whole lines the file holds beyond it, up to the
// batch limits, and reports whether it found any. The file is read into the
// follower's scratch buffer and b is sealed, so a fast job costs one
// allocation per batch: its event.
func (f *follower) readAhead(b *Batch) bool {
	st, err := f.file.Stat()
	if err != nil || st.Size() <= b.End {
		return false
	}
	if f.scratch == nil {
		f.scratch = make([]byte, maxBatchBytes)
	}
	buf := f.scratch[:min(st.Size()-b.End, maxBatchBytes-(b.End-b.Start))]
	n, err := f.file.ReadAt(buf, b.End)
	if err != nil && !errors.Is(err, io.EOF) {
		f.h.log.Warn("log follower: read ahead", "key", f.key, "err", err)
		return false
	}
	had := len(b.Lines)
	b.Lines = slices.Grow(b.Lines, min(bytes.Count(buf[:n], []byte{'\n'}), maxBatchLines-had))
	for data := buf[:n]; len(b.Lines) < maxBatchLines; {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		b.Lines = append(b.Lines, data[:i:i])
		b.End += int64(i) + 1
		data = data[i+1:]
	}
	if len(b.Lines) == had {
		return false
	}
	b.seal()
	return true
}

func (f *follower) publish(b *Batch) {
	if len(b.Lines) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.committed = b.End
	for s := range f.subs {
		if s.parked && s.direct(b) {
			continue
		}
		select {
		case s.c <- b:
		default:
			// Full: cut this viewer off; it catches up from the file.
			delete(f.subs, s)
			close(s.c)
			f.h.cutoffs.Add(1)
		}
	}
	// The unfinished line that follows these lines goes after them; one
	// they overtook is stale.
	if p := f.part; p != nil {
		if p.Start == b.End {
			f.sendPartial()
		} else if p.Start < b.End {
			f.part = nil
		}
	}
}

// complete ends the subscriptions once the finished log is fully published.
func (f *follower) complete() bool {
	f.mu.Lock()
	done := f.final >= 0 && f.committed >= f.final
	f.mu.Unlock()
	if !done {
		return false
	}
	f.h.mu.Lock()
	f.h.retire(f)
	f.h.mu.Unlock()
	f.mu.Lock()
	f.gone = true
	f.end(true)
	f.mu.Unlock()
	return true
}

// end closes every subscription, saying whether the log is complete;
// f.mu is held.
func (f *follower) end(complete bool) {
	for s := range f.subs {
		if complete {
			s.final = f.final
		} else {
			s.closed = true
		}
		delete(f.subs, s)
		close(s.c)
	}
}
