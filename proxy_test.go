package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// cutProxy is a TCP proxy on loopback that cuts every connection once it
// has passed `after` bytes from the server to the client: a flaky link, as
// a client behind it sees one.
type cutProxy struct {
	ln    net.Listener
	cuts  atomic.Int64
	wg    sync.WaitGroup
	after int64
}

func newCutProxy(t *testing.T, target string, after int64) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, after: after}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c, target) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *cutProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) serve(c net.Conn, target string) {
	defer c.Close()
	s, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() { _, _ = io.Copy(s, c) }()
	n, err := io.CopyN(c, s, p.after)
	if n == p.after && err == nil {
		p.cuts.Add(1) // cut here, mid-whatever
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, as a dropped link often is
		}
		return
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return
	}
}
