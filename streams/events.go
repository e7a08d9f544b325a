package streams

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shiplog/shiplog/sse"
)

// Status reports a run's state to a stream: its JSON, whether it has
// finished, and a channel closed at its next change.
type Status func(ctx context.Context) (data []byte, finished bool, changed <-chan struct{}, err error)

// EventOptions tunes ServeEvents.
type EventOptions struct {
	Heartbeat    time.Duration // comment sent when idle; 15s if zero
	Retry        time.Duration // reconnect hint for EventSource; 2s if zero
	WriteTimeout time.Duration // a viewer blocked this long on a write is dropped (at half of it at the earliest); 30s if zero
	// Window, when set, is sent first as a "window" event: where the stream
	// starts (JSON the caller built).
	Window []byte
	// Lines counts lines written, for metrics.
	Lines *atomic.Int64
	// HTTP10 says the request was HTTP/1.0, which has no chunked framing:
	// the stream then ends when the connection does.
	HTTP10 bool
}

// flushAt bounds what is buffered before a write while catching up.
const flushAt = 128 << 10

// bufs holds the buffers of viewers catching up: a viewer that waits for
// lines gives its buffer back, so idle viewers hold none and busy ones do
// not grow a new one after every wait. Small writes (a live line, a status)
// take no pooled buffer.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*flushAt); return &b }}

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
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	// no-transform: a proxy that compresses must not hold events back.
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	// Compressing proxies leave a response alone that says it is encoded
	// (nginx's gzip, Caddy's encode; Caddy 2.6 ignores no-transform).
	// Node's fetch drops what it had decompressed when a compressed stream
	// is cut, so a client cut soon after each start never got further.
	// RFC 9110 reserves "identity" for Accept-Encoding, but every client
	// tested (README) reads it as "no encoding", which is what it says.
	h.Set("Content-Encoding", "identity")
	out, ctx, cancel, err := newEventWriter(ctx, w, opts.WriteTimeout, !opts.HTTP10)
	if err != nil {
		return err
	}
	defer cancel()
	defer out.close()
	defer cur.unpark() // before the connection closes

	// A viewer's buffer is small, or, while it catches up, a big one from
	// bufs.
	var (
		buf    []byte
		pooled *[]byte
	)
	room := func(n int) {
		if pooled == nil && len(buf)+n > 16<<10 {
			pooled = bufs.Get().(*[]byte)
			buf = append((*pooled)[:0], buf...)
		}
	}
	release := func() {
		if pooled != nil && cap(buf) <= 4*flushAt {
			*pooled = buf[:0]
			bufs.Put(pooled)
		}
		pooled, buf = nil, nil
	}
	defer release()
	// The first write is small and goes at once: a compressing proxy
	// (Caddy's encode) that sees a first write of 512 bytes or more holds
	// the stream until it ends.
	buf = append(buf, "retry: "...)
	buf = strconv.AppendInt(buf, opts.Retry.Milliseconds(), 10)
	buf = append(buf, "\n\n"...)
	if err := out.write(buf); err != nil {
		return err
	}
	buf = buf[:0]
	if opts.Window != nil {
		buf = sse.AppendEvent(buf, "window", opts.Window)
	}
	write := func() error {
		if len(buf) == 0 {
			return nil
		}
		if err := out.write(buf); err != nil {
			return err
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
			buf = sse.AppendEvent(buf, "status", data)
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
				buf = sse.AppendEvent(buf, "end", data)
				if err := write(); err != nil {
					return err
				}
				return out.end()
			}
			if errors.Is(err, ErrClosed) {
				// The server is going away: say so, and EventSource
				// reconnects (to the next server) after the retry hint.
				buf = sse.AppendEvent(buf, "shutdown", []byte(`{}`))
				out.hurry(time.Second)
				if write() == nil {
					_ = out.end()
				}
				return err
			}
			if err != nil {
				_ = write()
				return err
			}
			if b == nil {
				break
			}
			if b.shared && b.End-b.Start > directMax {
				// A live batch too big for the follower to write goes out
				// from its shared encoding, not copied for each viewer.
				if err := write(); err != nil {
					return err
				}
				if err := out.write(b.event()); err != nil {
					return err
				}
			} else {
				room(int(b.End-b.Start) + 64)
				buf = b.appendEvent(buf)
			}
			if opts.Lines != nil && !b.partial {
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
		release() // about to wait: the buffer goes back for others to use
		parked := false
		if raw := out.lend(); raw != nil {
			parked = cur.park(raw, out.chunked, opts.Lines)
		}
		at := cur.Offset()
		heartbeat.Reset(opts.Heartbeat)
		var (
			got          *Batch
			ok, received bool
			ping         bool
		)
		select {
		case <-ctx.Done():
			return nil
		case <-cur.hub.closing:
		case got, ok = <-cur.Wait():
			received = true
		case <-changed:
			stale = true
		case <-heartbeat.C:
			ping = true
		}
		if parked {
			// The rest of a chunk the follower began: framed already.
			if rest := cur.unpark(); len(rest) > 0 {
				if err := out.writeRaw(rest); err != nil {
					return err
				}
			}
		}
		if received {
			cur.Accept(got, ok)
		}
		if ping && cur.Offset() == at { // lines went out: no need
			buf = append(buf, ": ping\n\n"...)
		}
	}
}
