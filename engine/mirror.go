package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiplog/shiplog/logfile"
)

// maxPending bounds the unfinished line a mirror holds: the runner splits
// longer lines.
const maxPending = logfile.MaxLineBytes + len(logfile.SplitMarker) + 1

// MirrorLog copies run id's log from the stream to a log file at path
// with its index and times, byte for byte as the runner wrote it, from the
// file's size on: whole lines only, each write a batch of them, so the
// tailer and readers serve the copy as they serve a local run. It returns
// the log's size once the end is in, or an error (ErrLogGap if the
// stream's messages do not join). grew, if not nil, is called with the
// copy's size after each write.
func (e *Engine) MirrorLog(ctx context.Context, id int64, path string, grew func(size int64)) (int64, error) {
	w, err := openMirror(path)
	if err != nil {
		return 0, err
	}
	defer w.close()
	// Followed by a consumer of this process's own rather than the
	// client's ordered consumer: when the node that holds the consumer
	// dies, the client's waits up to 10 s per attempt to make another,
	// and a viewer would wait with it. Here each attempt has a bound,
	// and the next one starts after the last message copied.
	var seq uint64 // the stream sequence of the last message copied
	gaps := 0
	for backoff := retryEvery; ; backoff = min(2*backoff, 2*time.Second) {
		done, err := e.mirrorFrom(ctx, id, w, &seq, grew)
		switch {
		case done:
			return w.size, nil
		case ctx.Err() != nil:
			return w.size, ctx.Err()
		case errors.Is(err, ErrLogGap):
			// Messages missed on the way, or a stream with a hole in
			// it: asked again from the last one copied, a hole stays.
			if gaps++; gaps > 2 {
				return w.size, fmt.Errorf("log %d: %w", id, err)
			}
		case errors.Is(err, errMirrorMoved):
			backoff = 0
		case errors.Is(err, errFollow):
			e.log.Warn("follow a log in the engine; again", "run_id", id, "err", err)
		default:
			return w.size, fmt.Errorf("log %d: %w", id, err)
		}
		if !sleep(ctx, backoff) {
			return w.size, ctx.Err()
		}
		if errors.Is(err, errMirrorMoved) {
			backoff = retryEvery / 2
		}
	}
}

// errMirrorMoved says the consumer a mirror followed went away (missed
// heartbeats: its node died) or skipped a message: a new one is made.
var errMirrorMoved = errors.New("the log's consumer went away")

// errFollow marks the engine's errors, which a new consumer may not have,
// from the copy's own (a full disk, a line too long).
var errFollow = errors.New("follow")

// mirrorTimeout bounds one attempt to make the consumer a mirror follows.
const mirrorTimeout = 2 * time.Second

// mirrorFrom copies run id's messages after stream sequence *seq into w
// until the end is in (true) or the consumer fails.
func (e *Engine) mirrorFrom(ctx context.Context, id int64, w *mirrorFile, seq *uint64, grew func(int64)) (bool, error) {
	cfg := jetstream.ConsumerConfig{
		FilterSubject:     logSubject(id),
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: 30 * time.Second,
	}
	if *seq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, *seq+1
	}
	cctx, cancel := context.WithTimeout(ctx, mirrorTimeout)
	cons, err := e.logs.CreateConsumer(cctx, cfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("%w log %d: %w", errFollow, id, err)
	}
	defer func() {
		// Gone within InactiveThreshold anyway; sooner is tidier, also
		// when ctx has ended.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mirrorTimeout)
		go func() {
			defer cancel()
			_ = e.logs.DeleteConsumer(dctx, cons.CachedInfo().Name)
		}()
	}()
	// A heartbeat a second, an error after two missed: a dead node is
	// noticed in about 2 s.
	it, err := cons.Messages(jetstream.PullExpiry(4*time.Second), jetstream.PullHeartbeat(time.Second),
		jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return false, fmt.Errorf("%w log %d: %w", errFollow, id, err)
	}
	defer it.Stop()
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			it.Stop()
		case <-stopped:
		}
	}()
	var delivered uint64
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				return false, errMirrorMoved
			}
			return false, fmt.Errorf("%w log %d: %w", errFollow, id, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return false, fmt.Errorf("%w log %d: %w", errFollow, id, err)
		}
		if delivered++; md.Sequence.Consumer != delivered {
			return false, errMirrorMoved // one missed on the way
		}
		h := m.Headers()
		if v := h.Get(hdrEnd); v != "" {
			end, err := strconv.ParseInt(v, 10, 64)
			if err != nil || end != w.size || len(w.pending) > 0 {
				return false, fmt.Errorf("%w: log %d ends at %s, the copy has %d bytes", ErrLogGap, id, v, w.size+int64(len(w.pending)))
			}
			return true, nil
		}
		start, _, err := position(h)
		if err != nil {
			return false, err
		}
		at, _ := strconv.ParseInt(h.Get(hdrAt), 10, 64)
		if err := w.add(start, m.Data(), at); err != nil {
			return false, err
		}
		*seq = md.Sequence.Stream
		if grew != nil {
			grew(w.size)
		}
	}
}

// mirrorFile is a log file written from the stream.
type mirrorFile struct {
	f, idx      *os.File
	times       *logfile.TimesWriter
	size, lines int64
	pending     []byte // the start of a line whose end has not come
	out, idxOut []byte
}

func openMirror(path string) (*mirrorFile, error) {
	w := &mirrorFile{}
	var err error
	if w.f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
		return nil, err
	}
	// Lines already copied: the index and times go on from there.
	if w.size, w.lines, err = logfile.Count(io.NewSectionReader(w.f, 0, 1<<62)); err != nil {
		w.f.Close()
		return nil, err
	}
	if !endsWithNewline(w.f, w.size) {
		w.f.Close()
		return nil, fmt.Errorf("%s does not end with a whole line", path)
	}
	// The index and times are helps: readers rebuild or do without them.
	w.idx, _ = os.OpenFile(logfile.IndexPath(path), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if tf, err := os.OpenFile(logfile.TimesPath(path), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
		// The next record only if its time differs from the last one's,
		// as the runner writes them.
		last := int64(-1)
		var rec [logfile.TimeRecordSize]byte
		if fi, err := tf.Stat(); err == nil && fi.Size() >= logfile.TimeRecordSize {
			if _, err := tf.ReadAt(rec[:], fi.Size()-fi.Size()%logfile.TimeRecordSize-logfile.TimeRecordSize); err == nil {
				last = logfile.DecodeTime(rec[:]).At
			}
		}
		w.times = logfile.NewTimesWriter(tf, last)
	}
	return w, nil
}

func endsWithNewline(f *os.File, size int64) bool {
	if size == 0 {
		return true
	}
	var b [1]byte
	_, err := f.ReadAt(b[:], size-1)
	return err == nil && b[0] == '\n'
}

// add takes a message's data, which starts at byte start of the log.
func (w *mirrorFile) add(start int64, data []byte, at int64) error {
	have := w.size + int64(len(w.pending))
	if start > have {
		return fmt.Errorf("%w: a message starts at byte %d, the copy has %d", ErrLogGap, start, have)
	}
	if start+int64(len(data)) <= have {
		return nil // had it: a message sent twice
	}
	data = data[have-start:]
	i := bytes.LastIndexByte(data, '\n')
	if i < 0 {
		if len(w.pending)+len(data) > maxPending {
			return fmt.Errorf("a line longer than %d bytes", maxPending)
		}
		w.pending = append(w.pending, data...)
		return nil
	}
	w.out = append(append(w.out[:0], w.pending...), data[:i+1]...)
	w.pending = append(w.pending[:0], data[i+1:]...)
	// Index entries for the lines starting in out, as the runner writes
	// them: every logfile.IndexEvery lines.
	w.idxOut = w.idxOut[:0]
	lines := w.lines
	for off := 0; off < len(w.out); {
		if lines%logfile.IndexEvery == 0 {
			w.idxOut = logfile.AppendIndex(w.idxOut, w.size+int64(off))
		}
		j := bytes.IndexByte(w.out[off:], '\n')
		off += j + 1
		lines++
	}
	// As the runner does: the time first, so a reader who sees a line
	// finds its time.
	if at > 0 {
		w.times.Stamp(w.lines+1, at)
	}
	if _, err := w.f.Write(w.out); err != nil {
		_ = w.f.Truncate(w.size)
		return fmt.Errorf("write log copy: %w", err)
	}
	w.size += int64(len(w.out))
	w.lines = lines
	if w.idx != nil && len(w.idxOut) > 0 {
		if _, err := w.idx.Write(w.idxOut); err != nil {
			w.idx = nil
		}
	}
	return nil
}

func (w *mirrorFile) close() {
	for _, f := range []*os.File{w.f, w.idx} {
		if f != nil {
			f.Close()
		}
	}
	w.times.Close()
}
