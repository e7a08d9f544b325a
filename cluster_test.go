//go:build cluster

// The cluster test group: every part of a shiplog cluster in a process of
// its own, on loopback. Slow, so apart: go test -tags cluster -run Cluster .

package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/sse"
)

// testCluster is 3 engine nodes (TLS between all parts), 3 replicas (`shiplog serve --nats`, no
// runner) behind a round-robin TCP proxy, and 2 runners of zone prod.
type testCluster struct {
	t        *testing.T
	engines  []*engineProc
	replicas []*child
	runners  []*child
	proxy    *rrProxy
	front    *testServer // the cluster as users reach it: through the proxy
	nats     string      // the engine nodes' client URLs, comma-separated
	token    string      // the file holding the engine's token
	cfg      string
	data     string
	flags    []string // for every replica and runner
}

// engineProc is an engine node's process.
type engineProc struct {
	*child
	name string
}

func startTestCluster(t *testing.T, yaml string, flags ...string) *testCluster {
	t.Helper()
	dir, cfg, gate := writeConfig(t, yaml)
	c := &testCluster{t: t, cfg: cfg, data: dir, token: filepath.Join(dir, "engine-token"), flags: flags}
	if err := os.WriteFile(c.token, []byte("cluster-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs()
		}
	})
	self := []string{os.Args[0]}
	var clients, routes []string
	for range 3 {
		clients = append(clients, freeAddr(t))
		routes = append(routes, freeAddr(t))
	}
	var wg sync.WaitGroup
	c.engines = make([]*engineProc, 3)
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := startProc(t, self, "shiplog engine node is serving", "engine", "--name", name,
				"--data", filepath.Join(dir, "engine-"+name), "--listen", clients[i], "--cluster", routes[i],
				"--routes", strings.Join(routes, ","), "--token-file", c.token,
				"--tls-cert", tlsFile("engine.pem"), "--tls-key", tlsFile("engine-key.pem"), "--tls-ca", tlsFile("ca.pem"))
			c.engines[i] = &engineProc{child: ch, name: name}
		}()
	}
	wg.Wait()
	for _, e := range c.engines {
		if e == nil || e.child == nil {
			t.FailNow()
		}
	}
	var urls []string
	for _, a := range clients {
		urls = append(urls, "nats://"+a)
	}
	c.nats = strings.Join(urls, ",")
	c.replicas = make([]*child, 3)
	c.runners = make([]*child, 2)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.replicas[i] = c.startReplica(fmt.Sprintf("replica-%d", i+1))
		}()
	}
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runners[i] = startProc(t, self, "shiplog runner is taking runs", append([]string{"runner", "--nats", c.nats,
				"--nats-token-file", c.token, "--nats-tls-ca", tlsFile("ca.pem"), "--zone", "prod", "--config", cfg,
				"--data", filepath.Join(dir, fmt.Sprintf("runner-%d", i+1)), "--log-level", "info"}, flags...)...)
		}()
	}
	wg.Wait()
	var backends []string
	for _, r := range c.replicas {
		if r == nil || c.runners[0] == nil || c.runners[1] == nil {
			t.FailNow()
		}
		backends = append(backends, strings.TrimPrefix(r.URL, "http://"))
	}
	c.proxy = startProxy(t, backends)
	c.front = &testServer{t: t, URL: "http://" + c.proxy.Addr(), Gate: gate}
	return c
}

// tlsFile is a file of the test certificates (testdata/tls): the
// cluster's connections are encrypted, as on real hosts.
func tlsFile(name string) string {
	p, _ := filepath.Abs(filepath.Join("testdata", "tls", name))
	return p
}

// startReplica starts a replica that runs nothing, with its own data dir.
func (c *testCluster) startReplica(name string) *child {
	return startProc(c.t, []string{os.Args[0]}, "shiplog is serving", append([]string{"serve", "--addr", "127.0.0.1:0",
		"--log-level", "info", "--config", c.cfg, "--data", filepath.Join(c.data, name),
		"--nats", c.nats, "--nats-token-file", c.token, "--nats-tls-ca", tlsFile("ca.pem")}, c.flags...)...)
}

// dumpLogs shows the end of what each process logged, and the sizes of
// the log files each kept.
func (c *testCluster) dumpLogs() {
	_ = filepath.WalkDir(c.data, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(path, "/logs/") {
			if fi, err := d.Info(); err == nil {
				c.t.Logf("%s: %d bytes", path, fi.Size())
			}
		}
		return nil
	})
	var all []*child
	for _, e := range c.engines {
		all = append(all, e.child)
	}
	all = append(all, c.replicas...)
	all = append(all, c.runners...)
	for _, p := range all {
		if p == nil {
			continue
		}
		b, _ := os.ReadFile(p.LogPath)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		c.t.Logf("--- %s (%s):\n%s", p.LogPath, strings.Join(p.cmd.Args, " "), b)
	}
}

// connect is a client of the engine, for what the test asks it directly.
func (c *testCluster) connect() jetstream.JetStream {
	c.t.Helper()
	tok, _ := os.ReadFile(c.token)
	nc, err := nats.Connect(c.nats, nats.Token(strings.TrimSpace(string(tok))), nats.MaxReconnects(-1), nats.RootCAs(tlsFile("ca.pem")))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return js
}

// leader returns the engine node that leads the Raft group of stream.
func (c *testCluster) leader(js jetstream.JetStream, stream string) *engineProc {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		c.t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		c.t.Fatalf("stream %s is not kept by three nodes: %+v", stream, info.Cluster)
	}
	for _, e := range c.engines {
		if e.name == info.Cluster.Leader {
			return e
		}
	}
	c.t.Fatalf("stream %s is led by %q, not one of the nodes", stream, info.Cluster.Leader)
	return nil
}

// stop stops every process with SIGTERM, runners and replicas first, and
// checks that each exits cleanly.
func (c *testCluster) stop() {
	c.t.Helper()
	var groups [][]*child
	groups = append(groups, c.runners, c.replicas)
	var engines []*child
	for _, e := range c.engines {
		engines = append(engines, e.child)
	}
	groups = append(groups, engines)
	for _, g := range groups {
		var wg sync.WaitGroup
		for _, p := range g {
			if p.cmd.ProcessState != nil {
				continue // killed by the test
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				done := make(chan error, 1)
				go func() { done <- p.cmd.Wait() }()
				select {
				case err := <-done:
					if err != nil {
						c.t.Errorf("%s exited with %v after SIGTERM", strings.Join(p.cmd.Args, " "), err)
					}
				case <-time.After(deadline):
					c.t.Errorf("%s did not stop on SIGTERM", strings.Join(p.cmd.Args, " "))
				}
			}()
		}
		wg.Wait()
	}
}

// rrProxy is a round-robin TCP proxy, as a load balancer without
// affinity: each connection from a client (an IP address) goes to the
// backend after the one its last connection went to, if that one takes
// it; so a client that reconnects moves to another replica every time.
type rrProxy struct {
	ln       net.Listener
	backends []string
	next     atomic.Uint64
	mu       sync.Mutex
	served   map[string]int // client address → backend index
	last     map[string]int // client IP → the backend of its last connection
	conns    map[net.Conn]bool
}

func startProxy(t *testing.T, backends []string) *rrProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &rrProxy{ln: ln, backends: backends, served: map[string]int{}, last: map[string]int{}, conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close() // idle keep-alive connections too
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.pipe(conn)
			}()
		}
	}()
	return p
}

func (p *rrProxy) Addr() string { return p.ln.Addr().String() }

// backendOf says which backend served the connection from client addr.
func (p *rrProxy) backendOf(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i, ok := p.served[addr]; ok {
		return i
	}
	return -1
}

func (p *rrProxy) pipe(conn net.Conn) {
	p.mu.Lock()
	p.conns[conn] = true
	p.mu.Unlock()
	defer func() {
		conn.Close()
		p.mu.Lock()
		delete(p.conns, conn)
		p.mu.Unlock()
	}()
	ip := conn.RemoteAddr().(*net.TCPAddr).IP.String()
	p.mu.Lock()
	i, seen := p.last[ip]
	p.mu.Unlock()
	if !seen {
		i = int(p.next.Add(1) % uint64(len(p.backends)))
	}
	var up net.Conn
	for range p.backends {
		i = (i + 1) % len(p.backends)
		c, err := net.DialTimeout("tcp", p.backends[i], time.Second)
		if err != nil {
			continue // down: the next one
		}
		up = c
		p.mu.Lock()
		p.served[conn.RemoteAddr().String()] = i
		p.last[ip] = i
		p.mu.Unlock()
		break
	}
	if up == nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, conn); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
	<-done // either side gone: both go
}

// The harness itself: every part starts, a run of zone prod triggered
// through the proxy runs on one of the two runners and is seen whole
// through every replica, and every part stops cleanly on SIGTERM.
func TestClusterHarness(t *testing.T) {
	c := startTestCluster(t, clusterJobs)
	js := c.connect()
	for _, s := range []string{"LOGS", "KV_RUNS", "WORK"} {
		c.leader(js, s)
	}
	run := c.front.trigger("hello", nil)
	done := c.front.waitRun(run.ID, isFinished)
	if done.State != api.Succeeded {
		t.Fatalf("run #%d: %s", run.ID, done.State)
	}
	for _, r := range c.replicas {
		s := &testServer{t: t, URL: r.URL}
		if code, hdr, body := s.do("GET", fmt.Sprintf("/api/runs/%d/log", run.ID), ""); string(body) != fmt.Sprintf("hello from %d\n", run.ID) {
			t.Fatalf("%s serves the log as %d %q (%v)", r.URL, code, body, hdr)
		}
	}
	c.stop()
}

const clusterJobs = `
jobs:
  hello:
    zone: prod
    run: echo "hello from $SHIPLOG_RUN_ID"
  flood:
    zone: prod
    # 200 batches of 1,000 lines, 50 ms apart: 20,000 lines a second,
    # from one process (a shell loop would fork twice a batch).
    run: |
      perl -MTime::HiRes=sleep -e '$| = 1; for my $i (0..199) { print map { $i*1000 + $_, "\n" } 1..1000; sleep 0.05 }'
`

// resumer follows a run's events through the proxy, on a new connection
// every 0.5 to 1.5 s, resuming from the last event it saw, and checks
// that each line comes exactly once and in order.
type resumer struct {
	c         *testCluster
	path      string
	next      int   // the next line it expects
	sessions  int   // connections
	moved     int   // connections served by another replica than the last
	seen      []int // connections per replica
	longest   time.Duration
	longestAt time.Time // when the longest stall ended
	finished  time.Time
	reached   atomic.Int64 // next, for other goroutines
	ip        net.IP       // its source address, if its own
}

// from is an HTTP client without keep-alive whose connections come from
// source address ip (on loopback), so the proxy tells it from others.
func from(ip net.IP) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext}}
}

// clientIP is the loopback source address of client n.
func clientIP(n int) net.IP { return net.IPv4(127, 0, byte(1+n/250), byte(2+n%250)) }

func (v *resumer) follow(ctx context.Context, reconnectEvery func() time.Duration) error {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if v.ip != nil {
		client = from(v.ip)
	}
	last, lastReplica := "", -1
	v.seen = make([]int, len(v.c.replicas))
	lastEvent := time.Now()
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("gave up at line %d: %w", v.next, ctx.Err())
		}
		sctx, cancel := context.WithTimeout(ctx, reconnectEvery())
		local := ""
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { local = i.Conn.LocalAddr().String() }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(sctx, trace), "GET", v.c.front.URL+v.path, nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := client.Do(req)
		if err != nil {
			cancel()
			continue // a replica went away under the proxy: again
		}
		v.sessions++
		if r := v.c.proxy.backendOf(local); r >= 0 {
			v.seen[r]++
			if lastReplica >= 0 && r != lastReplica {
				v.moved++
			}
			lastReplica = r
		}
		if resp.StatusCode == http.StatusNoContent {
			resp.Body.Close()
			cancel()
			v.finished = time.Now()
			return nil // resumed at the end of a finished run
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			cancel()
			if resp.StatusCode >= 500 {
				continue
			}
			return fmt.Errorf("%s from %s: %d %s", v.path, last, resp.StatusCode, b)
		}
		dec := sse.NewDecoder(resp.Body)
		ended := false
		for !ended {
			ev, err := dec.Next()
			if err != nil {
				break // cut: reconnect
			}
			now := time.Now()
			switch ev.Name {
			case "log":
				for _, l := range ev.Lines() {
					if l != strconv.Itoa(v.next) {
						resp.Body.Close()
						cancel()
						return fmt.Errorf("line %q where %d was due (resumed from id %s)", l, v.next, last)
					}
					v.next++
				}
				v.reached.Store(int64(v.next))
				last = ev.ID
				if gap := now.Sub(lastEvent); gap > v.longest {
					v.longest, v.longestAt = gap, now
				}
				lastEvent = now
			case "end":
				ended = true
			}
		}
		resp.Body.Close()
		cancel()
		if ended {
			v.finished = time.Now()
			return nil
		}
	}
}

// Exact resume across replicas: 100 viewers reconnecting about every
// second, each time through the proxy, while a job on a remote runner
// prints 200,000 lines at 20,000 lines/s, get every line exactly once;
// and so do long polls of /log?after= through the proxy.
func TestClusterExactResumeAcrossReplicas(t *testing.T) {
	c := startTestCluster(t, clusterJobs)
	run := c.front.trigger("flood", nil)
	const lines = 200_000
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	viewers := make([]*resumer, 100)
	errs := make(chan error, 200)
	for i := range viewers {
		v := &resumer{c: c, path: fmt.Sprintf("/api/runs/%d/events", run.ID), next: 1, ip: clientIP(i)}
		viewers[i] = v
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := v.follow(ctx, func() time.Duration { return 500*time.Millisecond + rand.N(time.Second) }); err != nil {
				errs <- fmt.Errorf("viewer %d: %w", i, err)
			}
		}()
	}
	polls := make([]int, 5)
	for i := range polls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := longPoll(ctx, from(clientIP(len(viewers)+i)), c.front.URL, run.ID)
			polls[i] = n
			if err != nil {
				errs <- fmt.Errorf("long poll %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sessions, moved := 0, 0
	for i, v := range viewers {
		if v.next != lines+1 {
			t.Errorf("viewer %d got %d lines, want %d", i, v.next-1, lines)
		}
		if v.moved != v.sessions-1 {
			t.Errorf("viewer %d moved replica %d times in %d connections (%v)", i, v.moved, v.sessions, v.seen)
		}
		sessions += v.sessions
		moved += v.moved
	}
	for i, n := range polls {
		if n != lines {
			t.Errorf("long poll %d got %d lines, want %d", i, n, lines)
		}
	}
	if done := c.front.waitRun(run.ID, isFinished); done.State != api.Succeeded {
		t.Fatalf("the run: %s", done.State)
	}
	done := c.front.waitRun(run.ID, isFinished)
	var slowest time.Duration
	for _, v := range viewers {
		slowest = max(slowest, v.finished.Sub(*done.StartedAt))
	}
	ran := done.FinishedAt.Sub(*done.StartedAt)
	t.Logf("the job ran %s (%.0f lines/s); the last viewer had the whole log %s after it started", ran.Round(time.Millisecond), lines/ran.Seconds(), slowest.Round(time.Millisecond))
	t.Logf("100 viewers: %d connections, %d of the reconnections to another replica; 5 long pollers", sessions, moved)
}

// longPoll reads a run's log through the proxy by long polls of
// /log?after=, each on a new connection, and checks the lines are exact.
// It returns how many lines it read.
func longPoll(ctx context.Context, client *http.Client, base string, id int64) (int, error) {
	next, off := 1, "0"
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/runs/%d/log?after=%s&wait=5s", base, id, off), nil)
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode >= 500 {
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return next - 1, fmt.Errorf("after=%s: %d %s", off, resp.StatusCode, body)
		}
		for _, l := range linesOf(body) {
			if l != strconv.Itoa(next) {
				return next - 1, fmt.Errorf("line %q where %d was due (after=%s)", l, next, off)
			}
			next++
		}
		off = resp.Header.Get("X-Log-Offset")
		if resp.Header.Get("X-Log-Complete") == "true" {
			return next - 1, nil
		}
	}
	return next - 1, ctx.Err()
}

// tickerJob prints 60,000 numbered lines in 300 batches 50 ms apart, and
// records the longest time one batch took to go out: a job blocked on its
// output would take longer.
const tickerJob = `
  ticker:
    zone: prod
    env: {GATE: $$GATE}
    run: |
      i=0; prev=$(date +%s%N); worst=0
      while [ $i -lt 300 ]; do
        seq $((i*200+1)) $((i*200+200))
        now=$(date +%s%N); gap=$(( (now-prev)/1000000 )); prev=$now
        [ $gap -gt $worst ] && worst=$gap
        i=$((i+1)); sleep 0.05
      done
      echo $worst > "$GATE/worst-$SHIPLOG_RUN_ID"
`

// Kill -9 of a replica, then of the engine node that leads the log
// stream, while a remote job prints: viewers going through the proxy get
// every line once, the job never waits on its output, and the longest
// stall a viewer sees is under 10 s.
func TestClusterSurvivesKilledReplicaAndLeader(t *testing.T) {
	c := startTestCluster(t, clusterJobs+tickerJob)
	js := c.connect()
	run := c.front.trigger("ticker", nil)
	begun := time.Now()
	const lines = 60_000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	viewers := make([]*resumer, 12)
	errs := make(chan error, len(viewers))
	for i := range viewers {
		v := &resumer{c: c, path: fmt.Sprintf("/api/runs/%d/events", run.ID), next: 1}
		viewers[i] = v
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Only when cut: the stall is what a viewer of a dead
			// replica sees.
			if err := v.follow(ctx, func() time.Duration { return time.Minute }); err != nil {
				errs <- fmt.Errorf("viewer %d: %w", i, err)
			}
		}()
	}
	least := func() int {
		n := lines + 1
		for _, v := range viewers {
			n = min(n, int(v.reached.Load()))
		}
		return n
	}
	waitFor(t, "the viewers to read 10,000 lines", func() bool { return least() > 10_000 }, deadline)
	t.Logf("%s: kill -9 of %s at line %d", time.Since(begun).Round(time.Millisecond), c.replicas[0].URL, least())
	c.replicas[0].kill9(t)
	waitFor(t, "the viewers to read 25,000 lines", func() bool { return least() > 25_000 }, deadline)
	leader := c.leader(js, "LOGS")
	t.Logf("%s: kill -9 of engine node %s, the log stream's leader, at line %d", time.Since(begun).Round(time.Millisecond), leader.name, least())
	leader.kill9(t)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var stall time.Duration
	for i, v := range viewers {
		if v.next != lines+1 {
			t.Errorf("viewer %d got %d lines, want %d", i, v.next-1, lines)
		}
		stall = max(stall, v.longest)
		t.Logf("viewer %d: longest stall %s, ended %s after the start, %d connections", i, v.longest.Round(time.Millisecond), v.longestAt.Sub(begun).Round(time.Millisecond), v.sessions)
	}
	done := c.front.waitRun(run.ID, isFinished)
	if done.State != api.Succeeded {
		t.Fatalf("the run: %s (%s)", done.State, done.Error)
	}
	worst, err := os.ReadFile(filepath.Join(c.front.Gate, fmt.Sprintf("worst-%d", run.ID)))
	if err != nil {
		t.Fatal(err)
	}
	if ms, _ := strconv.Atoi(strings.TrimSpace(string(worst))); ms > 2000 {
		t.Errorf("a batch of the job took %d ms to go out: it waited on its output", ms)
	}
	t.Logf("the job ran %s, its slowest batch %s ms; the longest stall a viewer saw: %s", done.FinishedAt.Sub(*done.StartedAt).Round(time.Millisecond), strings.TrimSpace(string(worst)), stall.Round(time.Millisecond))
	if stall >= 10*time.Second {
		t.Errorf("a viewer saw no line for %s", stall)
	}
}

const burstJobs = `
max_concurrent_runs: 20
jobs:
  burst:
    zone: prod
    # 250 batches of 200 lines, 20 ms apart: 10,000 lines a second, from
    # one process (a shell loop would fork twice a batch).
    run: |
      perl -MTime::HiRes=sleep -e '$| = 1; for my $i (0..249) { print map { $i*200 + $_, "\n" } 1..200; sleep 0.02 }'
`

// One replica follows 20 runs printing 10,000 lines a second each, with
// two viewers on each: one engine subscription per run, not per viewer,
// every line to every viewer, and the engine never drops a message for
// the replica falling behind.
func TestClusterReplicaFollowsTwentyBusyRuns(t *testing.T) {
	c := startTestCluster(t, burstJobs)
	replica := &testServer{t: t, URL: c.replicas[0].URL}
	const runs, lines = 20, 50_000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var (
		wg   sync.WaitGroup
		ids  []int64
		errs = make(chan error, 2*runs)
	)
	for range runs {
		ids = append(ids, c.front.trigger("burst", nil).ID)
	}
	viewers := make([]*resumer, 0, 2*runs)
	direct := &testCluster{t: t, front: replica, replicas: c.replicas, proxy: &rrProxy{served: map[string]int{}}}
	for _, id := range ids {
		for range 2 {
			v := &resumer{c: direct, path: fmt.Sprintf("/api/runs/%d/events", id), next: 1}
			viewers = append(viewers, v)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := v.follow(ctx, func() time.Duration { return time.Minute }); err != nil {
					errs <- fmt.Errorf("run #%d: %w", id, err)
				}
			}()
		}
	}
	// Sample the replica's engine subscriptions while the runs go.
	most := 0
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			var body []byte
			if resp, err := replica.request(ctx, "GET", "/metrics", nil); err == nil {
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			for _, l := range strings.Split(string(body), "\n") {
				if v, ok := strings.CutPrefix(l, "shiplog_log_copies "); ok {
					n, _ := strconv.Atoi(v)
					most = max(most, n)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	wg.Wait()
	cancel()
	<-sampled
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, v := range viewers {
		if v.next != lines+1 {
			t.Errorf("viewer %d got %d lines, want %d", i, v.next-1, lines)
		}
	}
	var took time.Duration
	for _, id := range ids {
		r := c.front.waitRun(id, isFinished)
		if r.State != api.Succeeded {
			t.Errorf("run #%d: %s", id, r.State)
		}
		took = max(took, r.FinishedAt.Sub(*r.StartedAt))
	}
	if most > runs || most == 0 {
		t.Errorf("the replica held %d engine subscriptions for %d runs and %d viewers, want one per run", most, runs, len(viewers))
	}
	replica.waitMetric("shiplog_engine_slow_consumers_total 0")
	t.Logf("%d runs of %d lines (the slowest took %s: %.0f lines/s), %d viewers on one replica: at most %d engine subscriptions, no slow consumer",
		runs, lines, took.Round(time.Millisecond), lines/took.Seconds(), len(viewers), most)
}

const bigJobs = `
jobs:
  big:
    zone: prod
    # 10,000,000 lines of 101 bytes (1,010,000,000 bytes), then one line
    # of 4 MiB, then one more.
    run: |
      seq -f "%0100.0f" 1 10000000
      head -c 4194304 /dev/zero | tr '\0' y; echo
      echo last
`

// A 1 GB log written by a remote runner is served whole, ranged,
// line-indexed and searched by a replica started after the run ended; a
// 4 MiB line arrives intact.
func TestClusterGigabyteLogOnANewReplica(t *testing.T) {
	c := startTestCluster(t, bigJobs)
	run := c.front.trigger("big", nil)
	done := c.front.waitRunWithin(run.ID, isFinished, 5*time.Minute)
	if done.State != api.Succeeded {
		t.Fatalf("the run: %s (%s)", done.State, done.Error)
	}
	const lineLen, n, big = 101, 10_000_000, 4 << 20
	size := int64(lineLen*n + big + 1 + len("last\n"))
	if done.Log == nil || done.Log.Bytes != size {
		t.Fatalf("the run's log: %+v, want %d bytes", done.Log, size)
	}
	began := time.Now()
	late := &testServer{t: t, URL: c.startReplica("late").URL}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// A range at the end: it waits for the copy of the whole log.
	resp := late.send(ctx, "GET", fmt.Sprintf("/api/runs/%d/log", run.ID), nil, "Range", fmt.Sprintf("bytes=%d-", int64(lineLen*n)))
	tail, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("a range of the end: %d %v", resp.StatusCode, err)
	}
	copied := time.Since(began)
	if len(tail) != big+1+len("last\n") || strings.Trim(string(tail[:big]), "y") != "" || string(tail[big:]) != "\nlast\n" {
		t.Fatalf("the 4 MiB line and the last: %d bytes, not intact", len(tail))
	}
	// The whole log, byte for byte as the runner wrote it.
	resp = late.send(ctx, "GET", fmt.Sprintf("/api/runs/%d/log", run.ID), nil)
	whole, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || whole != size {
		t.Fatalf("the whole log: %d bytes, %v", whole, err)
	}
	// A line by number, from the index: line 7,654,321.
	code, hdr, body := late.do("GET", fmt.Sprintf("/api/runs/%d/log?line=7654321", run.ID), "")
	if code != http.StatusOK || !strings.HasPrefix(string(body), fmt.Sprintf("%0100d\n", 7654321)) || hdr.Get("X-Log-Start") != strconv.Itoa(lineLen*7654320) {
		t.Fatalf("line 7,654,321: %d start %s %.120q", code, hdr.Get("X-Log-Start"), body)
	}
	// A search for a line near the end.
	code, _, body = late.do("GET", fmt.Sprintf("/api/runs/%d/search?q=%0100d", run.ID, 9999999), "")
	if code != http.StatusOK || !strings.Contains(string(body), `"line":9999999`) {
		t.Fatalf("search: %d %.300s", code, body)
	}
	t.Logf("a replica started after the run had its %d-byte log copied and served in %s", size, copied.Round(time.Millisecond))
}

const lockJobs = `
jobs:
  deploy:
    zone: prod
    lock: deploy-production
    # The guard: mkdir fails if another run of the lock is inside.
    run: |
      mkdir "$$GATE/inside" || { echo "another deploy is inside"; exit 3; }
      echo "$SHIPLOG_RUN_ID" >> "$$GATE/order"
      sleep 0.2
      rmdir "$$GATE/inside"
  hold:
    zone: prod
    lock: deploy-production
    run: |
      echo $$ > "$$GATE/pid-$SHIPLOG_RUN_ID"
      echo "holding"
      while [ ! -e "$$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.02; done
  gate:
    zone: prod
    run: |
      echo $$ > "$$GATE/pid-$SHIPLOG_RUN_ID"
      echo "waiting"
      while [ ! -e "$$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.02; done
`

// clusterLease is the lease of the lock tests' cluster: short, so that
// what it bounds is seen soon.
const clusterLease = 2 * time.Second

// runnerOf returns the runner that is node name.
func (c *testCluster) runnerOf(name string) *child {
	c.t.Helper()
	for i, r := range c.runners {
		id, _ := os.ReadFile(filepath.Join(c.data, fmt.Sprintf("runner-%d", i+1), "node-id"))
		if strings.HasSuffix(name, "-"+strings.TrimSpace(string(id))) {
			return r
		}
	}
	c.t.Fatalf("no runner is node %q", name)
	return nil
}

// pid waits for the job of run id to say its process id.
func (c *testCluster) pid(id int64) int {
	c.t.Helper()
	var pid int
	waitFor(c.t, "the job's pid", func() bool {
		b, _ := os.ReadFile(filepath.Join(c.front.Gate, fmt.Sprintf("pid-%d", id)))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	}, deadline)
	return pid
}

// alive says process pid runs: a zombie (its parent is frozen, and has
// not reaped it) does not.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(string(data), ')')
	return err == nil && i > 0 && len(data) > i+2 && data[i+2] != 'Z'
}

func (c *testCluster) replica(i int) *testServer {
	return &testServer{t: c.t, URL: c.replicas[i].URL, Gate: c.front.Gate}
}

// Locks across runners: runs of one lock triggered through different
// replicas run in the order they were triggered and never overlap; a
// runner frozen holding the lock has its job killed within half the lease
// and its late write refused; a runner killed holding it loses it within
// the lease and a second.
func TestClusterLocks(t *testing.T) {
	c := startTestCluster(t, lockJobs, "--lease", clusterLease.String())
	var ids []int64
	for i := range 5 {
		ids = append(ids, c.replica(i%3).trigger("deploy", nil).ID)
	}
	for _, id := range ids {
		if r := c.front.waitRun(id, isFinished); r.State != api.Succeeded {
			t.Fatalf("deploy #%d: %s (%s)", id, r.State, r.Error)
		}
	}
	order, _ := os.ReadFile(filepath.Join(c.front.Gate, "order"))
	want := ""
	nodes := map[string]bool{}
	for _, id := range ids {
		want += fmt.Sprintf("%d\n", id)
		nodes[c.front.waitRun(id, isFinished).Node] = true
	}
	if string(order) != want {
		t.Fatalf("the deploys ran in the order %q, want %q", order, want)
	}
	t.Logf("5 deploys through 3 replicas ran in order on %d runners, none inside another's", len(nodes))

	// Frozen (SIGSTOP) for twice the lease while holding the lock.
	held := c.replica(0).trigger("hold", nil)
	run := c.front.waitRun(held.ID, func(r *api.Run) bool { return r.State == api.Running })
	pid := c.pid(held.ID)
	next := c.replica(1).trigger("hold", nil)
	frozen := c.runnerOf(run.Node)
	stopped := time.Now()
	if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the frozen runner's job to be killed", func() bool { return !alive(pid) }, deadline)
	killed := time.Since(stopped)
	lapsed := c.front.waitRun(held.ID, isFinished)
	if lapsed.State != api.Interrupted || !strings.Contains(lapsed.Error, run.Node) {
		t.Fatalf("the frozen runner's run: %s %q", lapsed.State, lapsed.Error)
	}
	c.front.waitRun(next.ID, func(r *api.Run) bool { return r.State == api.Running })
	<-time.After(2*clusterLease - time.Since(stopped)) // frozen for twice the lease, as a stalled VM is
	if err := frozen.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the thawed runner's late write to be refused", func() bool {
		b, _ := os.ReadFile(frozen.LogPath)
		return strings.Contains(string(b), "its final record here is dropped")
	}, deadline)
	if r := c.front.waitRun(held.ID, isFinished); r.State != api.Interrupted || r.Error != lapsed.Error {
		t.Fatalf("after the thawed runner's late write the run is %s %q", r.State, r.Error)
	}
	t.Logf("frozen runner: its job was killed %s after the freeze (lease %s)", killed.Round(time.Millisecond), clusterLease)
	if killed > clusterLease/2+clusterLease/5 {
		t.Errorf("the frozen runner's job was killed %s after the freeze, want within half the lease after its last renewal", killed)
	}

	// Killed (SIGKILL) while holding the lock.
	run = c.front.waitRun(next.ID, func(r *api.Run) bool { return r.State == api.Running })
	after := c.replica(2).trigger("deploy", nil)
	killedAt := time.Now()
	c.runnerOf(run.Node).kill9(t)
	if r := c.front.waitRun(next.ID, isFinished); r.State != api.Interrupted {
		t.Fatalf("the killed runner's run: %s %q", r.State, r.Error)
	}
	done := c.front.waitRun(after.ID, isFinished)
	if done.State != api.Succeeded {
		t.Fatalf("the lock's next run: %s %q", done.State, done.Error)
	}
	took := done.StartedAt.Sub(killedAt)
	t.Logf("killed runner: the lock's next run started %s after the kill (lease %s)", took.Round(time.Millisecond), clusterLease)
	if took > clusterLease+time.Second {
		t.Errorf("the lock's next run started %s after the kill, want within the lease and a second", took)
	}
}

// Status across replicas: a long poll on one replica wakes within 50 ms of
// a change the runner made; ETags agree everywhere; a cancel through any
// replica stops a remote job within a second; run ids are unique and
// increasing under triggers through every replica at once.
func TestClusterStatus(t *testing.T) {
	c := startTestCluster(t, lockJobs)
	var slowest, slowestCancel time.Duration
	for i := range 3 {
		a, b := c.replica(i), c.replica((i+1)%3)
		run := b.trigger("gate", nil)
		a.waitRun(run.ID, func(r *api.Run) bool { return r.State == api.Running })
		pid := c.pid(run.ID)
		_, hdr, _ := a.do("GET", fmt.Sprintf("/api/runs/%d", run.ID), "")
		woke := make(chan time.Time, 1)
		asked := make(chan struct{})
		go func() {
			trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(asked) }}
			ctx := httptrace.WithClientTrace(context.Background(), trace)
			resp, err := a.request(ctx, "GET", fmt.Sprintf("/api/runs/%d?wait=30s", run.ID), nil, "If-None-Match", hdr.Get("ETag"))
			woke <- time.Now()
			if err != nil {
				t.Errorf("long poll: %v", err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("long poll: %d", resp.StatusCode)
			}
		}()
		<-asked // the long poll is on its way before the change
		sent := time.Now()
		if code, _, body := b.do("POST", fmt.Sprintf("/api/runs/%d/cancel", run.ID), ""); code != http.StatusAccepted && code != http.StatusOK {
			t.Fatalf("cancel through %s: %d %s", b.URL, code, body)
		}
		at := <-woke
		done := a.waitRun(run.ID, isFinished)
		if done.State != api.Canceled {
			t.Fatalf("after a cancel the run is %s", done.State)
		}
		if alive(pid) {
			t.Errorf("the job of the canceled run #%d is still there", run.ID)
		}
		// The record changed when the runner wrote it; the long poll on
		// another replica woke at that.
		slowest = max(slowest, at.Sub(*done.FinishedAt))
		slowestCancel = max(slowestCancel, done.FinishedAt.Sub(sent))
		// One ETag everywhere.
		_, hdr, _ = a.do("GET", fmt.Sprintf("/api/runs/%d", run.ID), "")
		for j := range 3 {
			if code, _, _ := c.replica(j).do("GET", fmt.Sprintf("/api/runs/%d", run.ID), "", "If-None-Match", hdr.Get("ETag")); code != http.StatusNotModified {
				t.Errorf("replica %d answered another's ETag with %d", j+1, code)
			}
		}
	}
	t.Logf("a long poll on another replica woke %s at most after the change; a cancel through a replica stopped the remote job in %s at most", slowest.Round(time.Millisecond), slowestCancel.Round(time.Millisecond))
	if slowest > 50*time.Millisecond {
		t.Errorf("a long poll woke %s after the change, want within 50 ms", slowest)
	}
	if slowestCancel > time.Second {
		t.Errorf("a cancel took %s to stop the remote job, want within a second", slowestCancel)
	}

	// Triggers through every replica at once.
	var (
		mu  sync.Mutex
		all []int64
		wg  sync.WaitGroup
	)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := c.replica(i).inBackground()
			last := int64(0)
			for range 10 {
				id := s.trigger("gate", nil).ID
				if id <= last {
					t.Errorf("ids from replica %d went %d then %d", i+1, last, id)
				}
				last = id
				mu.Lock()
				all = append(all, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if n := len(all); len(slices.Compact(slices.Sorted(slices.Values(all)))) != n || n != 30 {
		t.Fatalf("30 triggers through 3 replicas gave ids %v", all)
	}
	for _, id := range all {
		if code, _, body := c.front.do("POST", fmt.Sprintf("/api/runs/%d/cancel", id), ""); code >= 300 && code != http.StatusConflict {
			t.Fatalf("cancel #%d: %d %s", id, code, body)
		}
	}
}
