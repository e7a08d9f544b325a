package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"

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
	cons, err := e.logs.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{logSubject(id)}})
	if err != nil {
		return 0, fmt.Errorf("follow log %d: %w", id, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return 0, fmt.Errorf("follow log %d: %w", id, err)
	}
	defer it.Stop()
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return w.size, ctx.Err()
			}
			return w.size, fmt.Errorf("follow log %d: %w", id, err)
		}
		h := m.Headers()
		if v := h.Get(hdrEnd); v != "" {
			end, err := strconv.ParseInt(v, 10, 64)
			if err != nil || end != w.size || len(w.pending) > 0 {
				return w.size, fmt.Errorf("%w: log %d ends at %s, the copy has %d bytes", ErrLogGap, id, v, w.size+int64(len(w.pending)))
			}
			return w.size, nil
		}
		start, _, err := position(h)
		if err != nil {
			return w.size, err
		}
		at, _ := strconv.ParseInt(h.Get(hdrAt), 10, 64)
		if err := w.add(start, m.Data(), at); err != nil {
			return w.size, fmt.Errorf("log %d: %w", id, err)
		}
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
