package streams

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Status reports a run's state to a stream: its JSON, whether it has
// finished, and a channel closed at its next change.
type Status func(ctx context.Context) (data []byte, finished bool, changed <-chan struct{}, err error)

// EventOptions tunes ServeEvents.
type EventOptions struct {
	Heartbeat    time.Duration // comment sent when idle; 15s if zero
	Retry        time.Duration // reconnect hint for EventSource; 2s if zero
	WriteTimeout time.Duration // a viewer that takes longer for one write is dropped; 30s if zero
	// Window, when set, is sent first as a "window" event: where the stream
	// starts (JSON the caller built).
	Window []byte
	// Lines counts lines written, for metrics.
	Lines *atomic.Int64
}

// flushAt bounds what is buffered before a write while catching up.
const flushAt = 128 << 10

// ServeEvents streams the log under cur and the run's status changes as
// server-sent events until the run's log ends (then an "end" event), the
// client goes away, or the hub closes. Headers must not have been written.
func ServeEvents(ctx context.Context, w http.ResponseWriter, cur *Cursor, status Status, opts EventOptions) error {
	if opts.Heartbeat == 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.Retry == 0 {
		opts.Retry = 2 * time.Second
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 30 * time.Second
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	var buf []byte
	buf = append(buf, "retry: "...)
	buf = strconv.AppendInt(buf, opts.Retry.Milliseconds(), 10)
	buf = append(buf, "\n\n"...)
	if opts.Window != nil {
		buf = AppendEvent(buf, "window", opts.Window)
	}
	write := func() error {
		if len(buf) == 0 {
			return nil
		}
		_ = rc.SetWriteDeadline(time.Now().Add(opts.WriteTimeout))
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("write events: %w", err)
		}
		if err := rc.Flush(); err != nil {
			return fmt.Errorf("flush events: %w", err)
		}
		buf = buf[:0]
		return nil
	}

	heartbeat := time.NewTimer(opts.Heartbeat)
	defer heartbeat.Stop()
	var (
		data, lastStatus []byte
		finished         bool
		changed          <-chan struct{}
		stale            = true
	)
	for {
		// The status is fetched only when it has changed, not per batch.
		if stale {
			var err error
			data, finished, changed, err = status(ctx)
			if err != nil {
				return err
			}
			stale = false
		}
		if !bytes.Equal(data, lastStatus) {
			buf = AppendEvent(buf, "status", data)
			lastStatus = data
		}
		// Everything available now goes out before one flush.
		for {
			b, err := cur.Poll()
			if errors.Is(err, io.EOF) {
				if !finished {
					// The log is complete, so the final state is stored: get it.
					data, _, _, err = status(ctx)
					if err != nil {
						return err
					}
				}
				buf = AppendEvent(buf, "end", data)
				return write()
			}
			if errors.Is(err, ErrClosed) {
				// The server is going away: say so, and EventSource
				// reconnects (to the next server) after the retry hint.
				buf = AppendEvent(buf, "shutdown", []byte(`{}`))
				_ = write()
				return err
			}
			if err != nil {
				_ = write()
				return err
			}
			if b == nil {
				break
			}
			buf = b.appendEvent(buf)
			if opts.Lines != nil {
				opts.Lines.Add(int64(len(b.Lines)))
			}
			if len(buf) >= flushAt {
				if err := write(); err != nil {
					return err
				}
			}
		}
		if err := write(); err != nil {
			return err
		}
		if cap(buf) > 16<<10 {
			buf = nil // a viewer about to wait keeps no big buffer
		}
		heartbeat.Reset(opts.Heartbeat)
		select {
		case <-ctx.Done():
			return nil
		case <-cur.hub.closing:
		case b, ok := <-cur.Wait():
			cur.Accept(b, ok)
		case <-changed:
			stale = true
		case <-heartbeat.C:
			buf = append(buf, ": ping\n\n"...)
		}
	}
}
