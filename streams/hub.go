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
	"bytes"
	"errors"
	"io"
	"log"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nxadm/tail"
)

// ErrClosed is returned once the hub has shut down.
var ErrClosed = errors.New("streams: hub closed")

// Batch is a run of whole lines that lie at [Start, End) in the log file.
type Batch struct {
	Start, End int64
	Lines      [][]byte // without their newlines

	shared  bool // published by a follower to many viewers
	once    sync.Once
	encoded []byte // see encode
	head    int    // where the chunk header starts in encoded
}

// appendEvent appends the batch as SSE events. A live batch is encoded
// once however many viewers receive it.
func (b *Batch) appendEvent(dst []byte) []byte {
	if !b.shared {
		return AppendLogEvent(dst, b)
	}
	return append(dst, b.event()...)
}

// chunkRoom is the space kept before a shared encoding for its HTTP/1.1
// chunk header: up to 8 hex digits and CRLF.
const chunkRoom = 10

// encode makes the shared encoding once: the events, with room before them
// for a chunk header and a CRLF after, so that the same bytes serve HTTP/2
// viewers (the events) and taken-over HTTP/1.1 connections (the chunk).
func (b *Batch) encode() {
	b.once.Do(func() {
		// Room for the lines and their framing; escapes may add a little.
		size := chunkRoom + 40 + int(b.End-b.Start) + len(b.Lines)*len("data: ")
		enc := AppendLogEvent(make([]byte, chunkRoom, size+size/64), b)
		n := len(enc) - chunkRoom
		hdr := strconv.AppendInt(nil, int64(n), 16)
		hdr = append(hdr, "\r\n"...)
		b.head = chunkRoom - len(hdr)
		copy(enc[b.head:], hdr)
		enc = append(enc, "\r\n"...)
		b.encoded = enc
	})
}

// event is a shared batch encoded as SSE events.
func (b *Batch) event() []byte {
	b.encode()
	return b.encoded[chunkRoom : len(b.encoded)-2]
}

// chunk is event framed as one HTTP/1.1 chunk.
func (b *Batch) chunk() []byte {
	b.encode()
	return b.encoded[b.head:]
}

// seal encodes a shared batch now and points its lines into the encoding,
// so that whatever they pointed into can be reused.
func (b *Batch) seal() {
	ev := b.event()
	pos := 0
	for i, l := range b.Lines {
		if bytes.HasPrefix(ev[pos:], []byte("id: ")) { // the end of an event
			pos += bytes.IndexByte(ev[pos:], '\n') + 2
		}
		if bytes.HasPrefix(ev[pos:], []byte("event: log\n")) {
			pos += len("event: log\n")
		}
		pos += len("data: ")
		if pos < len(ev) && ev[pos] == escapeMark {
			b.Lines[i] = bytes.Clone(l) // escaped: not there as it is
		} else {
			b.Lines[i] = ev[pos : pos+len(l) : pos+len(l)]
		}
		pos += bytes.IndexByte(ev[pos:], '\n') + 1
	}
}

// subBuffer is how many batches wait for one subscriber. When it is full the
// subscriber is cut off (its channel closed) and its cursor catches up from
// the file, so a slow viewer never holds up the follower or other viewers.
const subBuffer = 64

// Batch limits keep one event, and memory held for slow viewers, bounded.
const (
	maxBatchLines = 2048
	maxBatchBytes = 256 << 10
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

// maxEnded bounds how many finished logs the hub remembers.
const maxEnded = 4096

// Key names a run's stream.
func Key(id int64) string { return strconv.FormatInt(id, 10) }

// Hub owns the followers of live log files.
type Hub struct {
	log *slog.Logger

	mu        sync.Mutex
	followers map[string]*follower
	ended     map[string]int64 // final sizes of logs that are complete
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
	return &Hub{log: log, followers: map[string]*follower{}, ended: map[string]int64{}, closing: make(chan struct{})}
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

// subscription is one viewer's place at a follower.
type subscription struct {
	c     chan *Batch
	start int64 // live batches continue from here
	f     *follower
	// Set before c is closed.
	final  int64 // >= 0: the log is complete at this size
	closed bool  // the hub shut down

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
	if s.next != b.Start || b.End-b.Start > directMax {
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
	if s.lines != nil {
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
func (h *Hub) subscribe(key, path string) (*subscription, int64, error) {
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

		s := &subscription{c: make(chan *Batch, subBuffer), f: f, final: -1}
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
	exited   chan struct{} // closed once run has returned and left the hub

	mu        sync.Mutex
	gone      bool // ended for good: subscribers must look again
	subs      map[*subscription]struct{}
	committed int64 // end of the last line published; written (locked) and read (not) only by run
	final     int64 // -1 until the run has finished
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
		h: h, key: key, path: path, t: t, file: file, stop: make(chan struct{}), finishC: make(chan struct{}, 1), exited: make(chan struct{}),
		subs: map[*subscription]struct{}{}, committed: start, tailAt: start, final: -1,
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
		select {
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
