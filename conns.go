package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
)

// fdReserve is how many file descriptors are kept from clients for the
// runner: a job's log, index and times files, its pipe, the database. A
// flood of idle connections must never make a deploy fail to start.
const fdReserve = 128

// raiseFileLimit lifts the soft limit on open files to the hard one, and
// returns it.
func raiseFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 1024
	}
	if l.Cur < l.Max {
		raised := l
		raised.Cur = l.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			l = raised
		}
	}
	return l.Cur
}

// connectionCap is how many client connections may be open at once: max if
// set, else what the file limit allows after the runner's reserve (half of
// it, since a viewer of a log holds the file open too).
func connectionCap(max int, fileLimit uint64) int {
	if max > 0 {
		return max
	}
	if fileLimit <= 2*fdReserve {
		return fdReserve / 2
	}
	return int(fileLimit-fdReserve) / 2
}

// limitConnections caps open connections: past the cap, new ones wait in
// the kernel's accept queue until one closes.
func limitConnections(ln net.Listener, n int, log *slog.Logger) net.Listener {
	log.Debug("connection cap", "max", n)
	return &limitListener{Listener: ln, slots: make(chan struct{}, n)}
}

// limitListener is netutil.LimitListener's idea, with connections that keep
// their socket reachable (syscall.Conn): event streams write to waiting
// viewers' sockets directly, and a wrapper that hid it would stop that.
type limitListener struct {
	net.Listener
	slots chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{} // waits while every slot is taken
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

// limitedConn gives its slot back when closed, once.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// SyscallConn reaches the socket under the connection.
func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// Timeouts for ordinary requests. Streams set their own deadlines per write;
// long polls and big downloads move theirs as they go (see extendWrites).
const (
	readTimeout  = 30 * time.Second // a whole request, body included
	writeTimeout = 60 * time.Second
	idleTimeout  = 120 * time.Second // between requests on a kept-alive connection
)

// writeFor gives the answer to c d more time to be written, for a long poll
// that waits before it writes.
func writeFor(c echo.Context, d time.Duration) {
	_ = http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(d))
}

// deadlineWriter moves the write deadline forward with each write: a long
// download goes on while the client keeps reading, and ends when it stalls
// for writeTimeout.
type deadlineWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	last time.Time
}

func extendWrites(w http.ResponseWriter) *deadlineWriter {
	return &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.last) > time.Second {
		d.last = now
		if err := d.rc.SetWriteDeadline(now.Add(writeTimeout)); err != nil {
			return 0, fmt.Errorf("extend write deadline: %w", err)
		}
	}
	return d.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }
