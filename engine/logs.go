package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiplog/shiplog/logfile"
)

// A run's log goes to the LOGS stream as it is written, in messages on
// subject logs.<run>: one stream for every run, not a stream per run (each
// stream is a Raft group of its own in a cluster). A message holds whole
// lines, or a piece of a line longer than a message; its headers say where
// its bytes start in the log, the number of the line they start in, and
// when its first line arrived. The runner's log file is the spool: the
// job writes to the file whatever the engine does, and the shipper sends
// the file on, resuming from the stream's last message.
var logsStream = jetstream.StreamConfig{
	Name:        "LOGS",
	Description: "shiplog run logs: logs.<run>",
	Subjects:    []string{"logs.*"},
	Storage:     jetstream.FileStorage,
	MaxMsgSize:  maxPayload,
	Duplicates:  2 * time.Minute,
}

const (
	// maxBatch bounds a message's log bytes: well under the server's
	// payload limit, large enough that a fast job needs few messages.
	maxBatch = 256 << 10
	// maxPayload is the embedded server's payload limit.
	maxPayload = 1 << 20

	hdrStart = "Shiplog-Start" // the byte offset of the data in the log
	hdrLine  = "Shiplog-Line"  // the number of the line the data starts in
	hdrAt    = "Shiplog-At"    // when its first line arrived, Unix ms
	hdrEnd   = "Shiplog-End"   // the last message: the log's final size
)

func logSubject(id int64) string { return "logs." + strconv.FormatInt(id, 10) }

// ErrLogGap says the stream skipped bytes a mirror has not got: its
// messages do not join.
var ErrLogGap = errors.New("log stream has a gap")

// Shipment sends one run's log file to the stream while the run writes
// it, and its end once the log is complete.
type Shipment struct {
	e    *Engine
	id   int64
	path string

	grew chan struct{} // the file grew; capacity 1, never blocks the writer
	done chan struct{}
	err  error

	mu    sync.Mutex
	final int64 // the log's size once complete; -1 before
}

// ShipLog starts sending run id's log at path, from where the stream
// stops. Call Grew after each write to the file and Finish when it is
// complete.
func (e *Engine) ShipLog(ctx context.Context, id int64, path string) *Shipment {
	s := &Shipment{e: e, id: id, path: path, grew: make(chan struct{}, 1), done: make(chan struct{}), final: -1}
	go func() {
		defer close(s.done)
		s.err = s.run(ctx)
		if s.err != nil && ctx.Err() == nil {
			e.log.Error("ship log", "run_id", id, "err", s.err)
		}
	}()
	return s
}

// Grew says the log file has new lines.
func (s *Shipment) Grew() {
	select {
	case s.grew <- struct{}{}:
	default:
	}
}

// Finish says the log is complete at size bytes.
func (s *Shipment) Finish(size int64) {
	s.mu.Lock()
	s.final = size
	s.mu.Unlock()
	s.Grew()
}

// Wait returns once the whole log and its end are in the stream, or ctx
// ends.
func (s *Shipment) Wait(ctx context.Context) error {
	select {
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shipState is where the stream's copy of a log ends.
type shipState struct {
	off  int64  // bytes in the stream
	line int64  // the line the next byte starts or continues
	seq  uint64 // the subject's last sequence; 0: none
	end  bool   // the end is in the stream
}

// resume reads where the stream's copy of run id's log ends.
func (e *Engine) resume(ctx context.Context, id int64) (shipState, error) {
	m, err := e.logs.GetLastMsgForSubject(ctx, logSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return shipState{line: 1}, nil
	}
	if err != nil {
		return shipState{}, err
	}
	if v := m.Header.Get(hdrEnd); v != "" {
		end, _ := strconv.ParseInt(v, 10, 64)
		line, _ := strconv.ParseInt(m.Header.Get(hdrLine), 10, 64) // absent from ends written before it was sent
		return shipState{off: end, line: line, seq: m.Sequence, end: true}, nil
	}
	start, line, err := position(m.Header)
	if err != nil {
		return shipState{}, err
	}
	return shipState{off: start + int64(len(m.Data)), line: line + int64(bytes.Count(m.Data, []byte{'\n'})), seq: m.Sequence}, nil
}

func position(h nats.Header) (start, line int64, err error) {
	start, err1 := strconv.ParseInt(h.Get(hdrStart), 10, 64)
	line, err2 := strconv.ParseInt(h.Get(hdrLine), 10, 64)
	if err1 != nil || err2 != nil || start < 0 || line < 1 {
		return 0, 0, fmt.Errorf("log message without a valid %s and %s", hdrStart, hdrLine)
	}
	return start, line, nil
}

// retryEvery spaces the shipper's attempts while the engine cannot be
// reached; the job goes on writing its file meanwhile.
const retryEvery = 250 * time.Millisecond

// shipTimeout bounds one send or read of the shipper: when the node that
// leads the stream dies, a send waits for no answer, and the next try,
// once a new leader is elected, goes sooner than the client's default
// 5 s. A send that landed after all is not added twice (message ids).
const shipTimeout = time.Second

func (s *Shipment) run(ctx context.Context) error {
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	times := newTimesReader(logfile.TimesPath(s.path))
	defer times.close()
	buf := make([]byte, maxBatch)
	var st shipState
	synced := false
	for {
		if !synced {
			rctx, cancel := context.WithTimeout(ctx, shipTimeout)
			st, err = s.e.resume(rctx, s.id)
			cancel()
			if err != nil {
				if !s.wait(ctx, retryEvery) {
					return ctx.Err()
				}
				continue
			}
			synced = true
		}
		if st.end {
			return nil
		}
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		s.mu.Lock()
		final := s.final
		s.mu.Unlock()
		// The next message: lines of the file, or the end once all of a
		// complete log is in.
		msg := &nats.Msg{Subject: logSubject(s.id), Header: nats.Header{}}
		key := strconv.FormatInt(s.id, 10) + ":"
		var lines int64
		switch {
		case st.off < fi.Size():
			n, err := f.ReadAt(buf, st.off)
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			var at int64
			msg.Data, lines, at = s.batch(buf[:n], st.line, times)
			if len(msg.Data) == 0 {
				// Only the start of an unfinished line: wait for the rest.
				if !s.wait(ctx, 0) {
					return ctx.Err()
				}
				continue
			}
			msg.Header.Set(hdrStart, strconv.FormatInt(st.off, 10))
			msg.Header.Set(hdrLine, strconv.FormatInt(st.line, 10))
			msg.Header.Set(hdrAt, strconv.FormatInt(at, 10))
			key += strconv.FormatInt(st.off, 10)
		case final >= 0 && st.off >= final:
			msg.Header.Set(hdrEnd, strconv.FormatInt(st.off, 10))
			msg.Header.Set(hdrLine, strconv.FormatInt(st.line, 10))
			key += "end"
		default:
			if !s.wait(ctx, 0) {
				return ctx.Err()
			}
			continue
		}
		if s.e.room(len(msg.Data)) != nil {
			// The disk is full: the file keeps the lines meanwhile.
			if !s.wait(ctx, retryEvery) {
				return ctx.Err()
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, shipTimeout)
		ack, err := s.e.js.PublishMsg(pctx, msg, jetstream.WithMsgID(key), jetstream.WithExpectLastSequencePerSubject(st.seq))
		cancel()
		if err != nil {
			// Sent but not acknowledged, sent by another shipper, or not
			// sent: read the stream's end again before going on.
			synced = false
			if !s.wait(ctx, retryEvery) {
				return ctx.Err()
			}
			continue
		}
		st.seq = ack.Sequence
		st.end = msg.Header.Get(hdrEnd) != ""
		st.off += int64(len(msg.Data))
		st.line += lines
		s.e.shipped.Add(int64(len(msg.Data)))
	}
}

// wait waits for the file to grow, or for d if d > 0; false when ctx
// ended.
func (s *Shipment) wait(ctx context.Context, d time.Duration) bool {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-s.grew:
		if d > 0 {
			// A retry waits its time whatever the writer does.
			select {
			case <-ctx.Done():
				return false
			case <-timer:
			}
		}
		return true
	case <-timer:
		return true
	}
}

// batch returns the part of b (the file from line's start on) that goes
// in one message, the newlines in it, and when its first line arrived:
// whole lines arriving at the same time, or a piece of a line longer than
// a message.
func (s *Shipment) batch(b []byte, line int64, times *timesReader) ([]byte, int64, int64) {
	at, next := times.at(line)
	end, n := 0, line
	for end < len(b) {
		if next > 0 && n >= next {
			break // the next lines arrived later: a message of their own
		}
		i := bytes.IndexByte(b[end:], '\n')
		if i < 0 {
			break
		}
		end += i + 1
		n++
	}
	if end == 0 && len(b) == maxBatch {
		return b, 0, at // a piece of a long line
	}
	return b[:end], n - line, at
}

// timesReader reads a log's times sidecar as it grows.
type timesReader struct {
	path string
	f    *os.File
	recs []logfile.TimeRecord
	read int64 // bytes of the file read
}

func newTimesReader(path string) *timesReader { return &timesReader{path: path} }

// at returns when line arrived (Unix ms; 0 if unknown) and the first line
// after it that arrived later (0 if none is known yet).
func (t *timesReader) at(line int64) (at, next int64) {
	for {
		// Records before the one covering line are done with.
		for len(t.recs) > 1 && t.recs[1].Line <= line {
			t.recs = t.recs[1:]
		}
		if len(t.recs) >= 2 || !t.more() {
			break
		}
	}
	switch {
	case len(t.recs) == 0:
		return 0, 0
	case t.recs[0].Line > line:
		return 0, t.recs[0].Line
	case len(t.recs) > 1:
		return t.recs[0].At, t.recs[1].Line
	}
	return t.recs[0].At, 0
}

// more reads some of the records written since it last read; false if
// there were none.
func (t *timesReader) more() bool {
	if t.f == nil {
		f, err := os.Open(t.path)
		if err != nil {
			return false // no times: messages carry none
		}
		t.f = f
	}
	var b [64 * logfile.TimeRecordSize]byte
	n, _ := t.f.ReadAt(b[:], t.read)
	n -= n % logfile.TimeRecordSize
	for i := 0; i < n; i += logfile.TimeRecordSize {
		t.recs = append(t.recs, logfile.DecodeTime(b[i:]))
	}
	t.read += int64(n)
	return n > 0
}

func (t *timesReader) close() {
	if t.f != nil {
		t.f.Close()
	}
}

// Shipper ships the logs of the runs this process runs, one Shipment per
// run, each from its first write to its end.
type Shipper struct {
	e    *Engine
	ctx  context.Context
	path func(id int64) string

	mu   sync.Mutex
	runs map[int64]*Shipment
	wg   sync.WaitGroup
}

// Shipper returns a Shipper of the logs at path(id); its shipments stop
// when ctx ends.
func (e *Engine) Shipper(ctx context.Context, path func(id int64) string) *Shipper {
	return &Shipper{e: e, ctx: ctx, path: path, runs: map[int64]*Shipment{}}
}

func (s *Shipper) shipment(id int64) *Shipment {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.runs[id]
	if sh == nil {
		sh = s.e.ShipLog(s.ctx, id, s.path(id))
		s.runs[id] = sh
	}
	return sh
}

// Grew says run id's log has new lines.
func (s *Shipper) Grew(id int64) { s.shipment(id).Grew() }

// Finish says run id's log is complete at size bytes; its shipment ends
// once the stream has it all.
func (s *Shipper) Finish(id, size int64) {
	sh := s.shipment(id)
	sh.Finish(size)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = sh.Wait(s.ctx)
		s.mu.Lock()
		delete(s.runs, id)
		s.mu.Unlock()
	}()
}

// Active returns how many logs are being sent: of running runs, and of
// finished runs whose end is not in the stream yet.
func (s *Shipper) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.runs)
}

// Wait waits for the shipments of finished runs to end.
func (s *Shipper) Wait() { s.wg.Wait() }

// PurgeLogs removes the logs of runs ids from the stream.
func (e *Engine) PurgeLogs(ctx context.Context, ids []int64) error {
	var errs []error
	for _, id := range ids {
		if err := e.logs.Purge(ctx, jetstream.WithPurgeSubject(logSubject(id))); err != nil {
			errs = append(errs, fmt.Errorf("purge log %d: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// Backfill ships, in the background, the complete logs in sizes (run id
// → size) whose end is not in the stream: runs whose shipping a shutdown
// cut short, or that ran before the engine did. Wait waits for it too.
func (s *Shipper) Backfill(sizes map[int64]int64) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for id, size := range sizes {
			st, err := s.e.resume(s.ctx, id)
			if err != nil {
				if s.ctx.Err() != nil {
					return
				}
				s.e.log.Error("check a log in the engine", "run_id", id, "err", err)
				continue
			}
			if !st.end {
				s.Finish(id, size)
			}
		}
	}()
}

// SealLog ends run id's log in the stream where it stands, for a run
// whose runner will never end it: it died holding the run, or the run
// never started. It returns the log's size and its number of whole lines
// (0 if an older shiplog ended it).
func (e *Engine) SealLog(ctx context.Context, id int64) (size, lines int64, err error) {
	for range 5 {
		st, err := e.resume(ctx, id)
		if err != nil {
			return 0, 0, fmt.Errorf("seal log %d: %w", id, err)
		}
		if !st.end {
			msg := &nats.Msg{Subject: logSubject(id), Header: nats.Header{}}
			msg.Header.Set(hdrEnd, strconv.FormatInt(st.off, 10))
			msg.Header.Set(hdrLine, strconv.FormatInt(st.line, 10))
			if _, err := e.js.PublishMsg(ctx, msg, jetstream.WithMsgID(strconv.FormatInt(id, 10)+":end"), jetstream.WithExpectLastSequencePerSubject(st.seq)); err != nil {
				continue // the log moved on meanwhile: look again
			}
		}
		return st.off, max(st.line-1, 0), nil
	}
	return 0, 0, fmt.Errorf("seal log %d: it keeps changing", id)
}
