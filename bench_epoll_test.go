package main

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// epollViewers is the load generator's side of a fan-out measurement: n
// viewers of one event stream, each a plain socket, all read by one thread
// through epoll (as wrk reads), so that on a shared machine the viewers
// cost little and the figure is the server's. onLine sees each log line
// ("data: " removed) with its viewer's number; it returns when every viewer
// has had the end event or lost its connection.
type epollViewers struct {
	fds   []int
	bufs  [][]byte
	ended int
	epfd  int
}

func dialViewers(b *testing.B, addr, path string, n int) *epollViewers {
	b.Helper()
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	sa := &syscall.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	v := &epollViewers{epfd: epfd}
	req := []byte(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, addr))
	for i := range n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := syscall.Connect(fd, sa); err != nil {
			b.Fatalf("connect viewer %d: %v", i, err)
		}
		if _, err := syscall.Write(fd, req); err != nil {
			b.Fatal(err)
		}
		// The head of the answer, read blocking, so the viewer is known to
		// be subscribed when this returns.
		var head []byte
		one := make([]byte, 4096)
		for !bytes.Contains(head, []byte("\r\n\r\n")) {
			k, err := syscall.Read(fd, one)
			if err != nil || k == 0 {
				b.Fatalf("viewer %d: read head: %v", i, err)
			}
			head = append(head, one[:k]...)
		}
		if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) {
			b.Fatalf("viewer %d: %q", i, head)
		}
		_, rest, _ := bytes.Cut(head, []byte("\r\n\r\n"))
		if err := syscall.SetNonblock(fd, true); err != nil {
			b.Fatal(err)
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(i)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			b.Fatal(err)
		}
		v.fds = append(v.fds, fd)
		v.bufs = append(v.bufs, append([]byte(nil), rest...))
	}
	return v
}

// run reads until every viewer has ended.
func (v *epollViewers) run(onLine func(viewer int, line []byte)) {
	events := make([]syscall.EpollEvent, 256)
	chunk := make([]byte, 64<<10)
	done := make([]bool, len(v.fds))
	streams := make([]sseLines, len(v.fds))
	scan := func(i int) {
		buf := v.bufs[i]
		for {
			j := bytes.IndexByte(buf, '\n')
			if j < 0 {
				break
			}
			l := buf[:j]
			buf = buf[j+1:]
			data, end := streams[i].next(l)
			if data != nil {
				onLine(i, data)
			}
			if end && !done[i] {
				done[i] = true
				v.ended++
			}
		}
		v.bufs[i] = append(v.bufs[i][:0], buf...)
	}
	for i := range v.fds {
		scan(i)
	}
	for v.ended < len(v.fds) {
		n, err := syscall.EpollWait(v.epfd, events, 1000)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			i := int(ev.Fd)
			for {
				k, err := syscall.Read(v.fds[i], chunk)
				if k > 0 {
					v.bufs[i] = append(v.bufs[i], chunk[:k]...)
				}
				if k <= 0 || err != nil {
					if (k == 0 && err == nil) || (err != nil && err != syscall.EAGAIN) {
						syscall.EpollCtl(v.epfd, syscall.EPOLL_CTL_DEL, v.fds[i], nil)
						if !done[i] {
							done[i] = true
							v.ended++
						}
					}
					break
				}
				if k < len(chunk) {
					break
				}
			}
			scan(i)
		}
	}
}

// latencies reads until every viewer has ended and returns, for every log
// line every viewer received, the time since the line's timestamp.
func (v *epollViewers) latencies() []time.Duration {
	var lat []time.Duration
	v.run(func(_ int, l []byte) {
		if ts := lineTime(l); ts > 0 {
			lat = append(lat, time.Duration(time.Now().UnixNano()-ts))
		}
	})
	return lat
}

func (v *epollViewers) close() {
	for _, fd := range v.fds {
		syscall.Close(fd)
	}
	syscall.Close(v.epfd)
}

// sseLines follows one event stream a line at a time, as the benchmark's
// viewers read it.
type sseLines struct{ inLog bool }

// next takes a line without its newline: it returns the data of a log line,
// and whether the line begins the end event.
func (s *sseLines) next(l []byte) (data []byte, end bool) {
	switch {
	case len(l) == 0:
		s.inLog = false
	case string(l) == "event: log":
		s.inLog = true
	case string(l) == "event: end":
		return nil, true
	case s.inLog && len(l) > 6 && string(l[:6]) == "data: ":
		return l[6:], false
	}
	return nil, false
}

// lineTime is the Unix nanoseconds a benchmark line starts with.
func lineTime(l []byte) int64 {
	i := bytes.IndexByte(l, ' ')
	if i < 0 {
		return 0
	}
	ts, _ := strconv.ParseInt(string(l[:i]), 10, 64)
	return ts
}
