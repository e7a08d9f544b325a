package streams

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// eventWriter sends a stream's bytes. Over HTTP/1 it takes the connection
// over from net/http after the handler has chosen its headers: each write is
// then one chunk of a chunked body, written with one system call, and none
// of net/http's per-connection buffers are kept for the life of the stream
// (a viewer mostly waits). The chunked framing matters: a connection cut
// mid-stream is then an error to the client (and to a proxy between), not
// a clean end of the body. Over HTTP/2, or through a writer that cannot be
// taken over, it writes and flushes the response.
type eventWriter struct {
	conn     net.Conn        // taken over; nil: through w
	raw      syscall.RawConn // conn's socket, if it has one
	w        http.ResponseWriter
	rc       *http.ResponseController
	timeout  time.Duration
	deadline time.Time // the write deadline set last
	chunked  bool      // conn's body is chunked: write frames each write
	frame    []byte    // reused for framing small writes
}

// writeRaw sends bytes framed already: the rest of a chunk that a direct
// write from the follower left over, or the last chunk.
func (e *eventWriter) writeRaw(p []byte) error {
	if e.conn == nil {
		return e.write(p)
	}
	if err := e.moveDeadline(); err != nil {
		return err
	}
	if _, err := e.conn.Write(p); err != nil {
		return fmt.Errorf("write events: %w", err)
	}
	return nil
}

// end closes a chunked body properly, after the stream's last event: the
// client tells this clean end from a cut connection.
func (e *eventWriter) end() error {
	if !e.chunked {
		return nil
	}
	return e.writeRaw([]byte("0\r\n\r\n"))
}

// newEventWriter sends the status line and headers w holds. The returned
// context ends when the client goes away.
func newEventWriter(ctx context.Context, w http.ResponseWriter, timeout time.Duration, chunked bool) (*eventWriter, context.Context, context.CancelFunc, error) {
	e := &eventWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
	conn, _, err := e.rc.Hijack()
	if err != nil {
		// HTTP/2 or a writer without Hijack: stay inside net/http. The
		// server's read timeout is for requests, not for a stream's life.
		_ = e.rc.SetReadDeadline(time.Time{})
		w.WriteHeader(http.StatusOK)
		ctx, cancel := context.WithCancel(ctx)
		return e, ctx, cancel, nil
	}
	e.conn = conn
	// A taken-over connection keeps the deadlines net/http gave the
	// request; the read one would end the stream after the read timeout.
	_ = conn.SetReadDeadline(time.Time{})
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			e.raw = raw
		}
	}
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	h := w.Header().Clone()
	h.Set("Connection", "close")
	if chunked {
		h.Set("Transfer-Encoding", "chunked")
	}
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	if err := h.Write(&head); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("write headers: %w", err)
	}
	head.WriteString("\r\n")
	if err := e.write(head.Bytes()); err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	e.chunked = chunked // the body from here on
	// net/http no longer watches the connection: a read that fails is
	// the client going away. A client sends nothing more on a stream;
	// anything it does send is read and dropped.
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		var b [64]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				return
			}
		}
	}()
	return e, ctx, cancel, nil
}

// moveDeadline moves the write deadline only when less than half of it is
// left, not per write: a write blocked for longer than between half the
// timeout and the timeout drops the viewer.
func (e *eventWriter) moveDeadline() error {
	if now := time.Now(); e.deadline.Sub(now) < e.timeout/2 {
		e.deadline = now.Add(e.timeout)
		return e.setDeadline(e.deadline)
	}
	return nil
}

// smallChunk is the largest write framed by copying into one buffer; a
// bigger one goes out with writev, where the copy would cost more.
const smallChunk = 16 << 10

// write sends p at once, as one chunk on a taken-over connection.
func (e *eventWriter) write(p []byte) error {
	if err := e.moveDeadline(); err != nil {
		return err
	}
	if e.conn != nil {
		var err error
		switch {
		case !e.chunked:
			_, err = e.conn.Write(p)
		case len(p) <= smallChunk:
			// One contiguous write: cheaper for the small writes of live
			// lines than writev of three parts.
			f := strconv.AppendInt(e.frame[:0], int64(len(p)), 16)
			f = append(f, "\r\n"...)
			f = append(f, p...)
			f = append(f, "\r\n"...)
			e.frame = f[:0]
			_, err = e.conn.Write(f)
		default:
			hdr := strconv.AppendInt(make([]byte, 0, 18), int64(len(p)), 16)
			bufs := net.Buffers{append(hdr, "\r\n"...), p, []byte("\r\n")}
			_, err = bufs.WriteTo(e.conn)
		}
		if err != nil {
			return fmt.Errorf("write events: %w", err)
		}
		return nil
	}
	if _, err := e.w.Write(p); err != nil {
		return fmt.Errorf("write events: %w", err)
	}
	if err := e.rc.Flush(); err != nil {
		return fmt.Errorf("flush events: %w", err)
	}
	return nil
}

// hurry makes the next write give up after d: for the last words to a
// viewer when the server is going away.
func (e *eventWriter) hurry(d time.Duration) {
	e.deadline = time.Now().Add(d)
	_ = e.setDeadline(e.deadline)
	e.timeout = 0 // keep this deadline
}

// lend returns the socket for writes without blocking from elsewhere while
// the stream waits (nil if there is none). It lifts the write deadline, which
// would otherwise fail those writes once past; the next write sets it again.
func (e *eventWriter) lend() syscall.RawConn {
	if e.raw == nil {
		return nil
	}
	if !e.deadline.IsZero() {
		_ = e.conn.SetWriteDeadline(time.Time{})
		e.deadline = time.Time{}
	}
	return e.raw
}

func (e *eventWriter) setDeadline(t time.Time) error {
	if e.conn != nil {
		return e.conn.SetWriteDeadline(t)
	}
	_ = e.rc.SetWriteDeadline(t) // not every writer has deadlines
	return nil
}

func (e *eventWriter) close() {
	if e.conn != nil {
		e.conn.Close()
	}
}
