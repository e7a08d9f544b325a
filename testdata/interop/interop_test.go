// Package interop follows shiplog's event streams with SSE clients that
// people use and nobody here wrote, through a proxy that cuts connections
// at random points (inside events too, with FIN and with RST), and checks
// that each client ends with every line exactly once and stops after the
// run ends. It is its own module so that these clients never become
// dependencies of shiplog. .ci/run runs it; see the README's streaming
// section for the wire contract it holds shiplog to.
package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	r3sse "github.com/r3labs/sse/v2"
	gosse "github.com/tmaxmax/go-sse"
	"gopkg.in/cenkalti/backoff.v1"
)

const (
	lines    = 50000
	deadline = 3 * time.Minute
)

var shiplogBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shiplog-interop-")
	if err != nil {
		panic(err)
	}
	shiplogBin = filepath.Join(dir, "shiplog")
	build := exec.Command("go", "build", "-o", shiplogBin, ".")
	build.Dir = "../.." // shiplog's own module
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build shiplog: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is shiplog running as a user would run it.
type server struct {
	url  string
	addr string
}

func startShiplog(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "shiplog.yaml")
	// 50,000 lines in bursts: live batches and catch-up alike.
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
jobs:
  lines:
    run: awk 'BEGIN { for (i = 1; i <= %d; i++) { printf "line %%d of the run\n", i; if (i %% 2000 == 0) { fflush(); system("sleep 0.05") } } }'
`, lines)), 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(shiplogBin, "--addr", addr, "--config", cfg, "--data", filepath.Join(dir, "data"),
		"--max-triggers-per-minute", "0", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	s := &server{url: "http://" + addr, addr: addr}
	for until := time.Now().Add(30 * time.Second); ; {
		if resp, err := http.Get(s.url + "/healthz"); err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(until) {
			t.Fatal("shiplog did not start")
		}
		<-time.After(20 * time.Millisecond) // polling for the process to listen
	}
}

func (s *server) trigger(t *testing.T) int64 {
	t.Helper()
	resp, err := http.Post(s.url+"/api/jobs/lines/runs", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var run struct{ ID int64 }
	if resp.StatusCode != 201 || json.NewDecoder(resp.Body).Decode(&run) != nil {
		t.Fatalf("trigger: %d", resp.StatusCode)
	}
	return run.ID
}

// chaos is a TCP proxy that cuts each connection after a random number of
// bytes from the server (somewhere inside an event, mostly), closing it
// with a FIN or a RST in turn. Each connection gets at least one whole
// event through, so a client that resumes correctly always gets further.
type chaos struct {
	ln   net.Listener
	cuts atomic.Int64
	wg   sync.WaitGroup
}

func newChaos(t *testing.T, target string) *chaos {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &chaos{ln: ln}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for i := 0; ; i++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.wg.Add(1)
			go func() { defer c.wg.Done(); c.serve(conn, target, i%2 == 0) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); c.wg.Wait() })
	return c
}

func (c *chaos) url() string { return "http://" + c.ln.Addr().String() }

func (c *chaos) serve(conn net.Conn, target string, rst bool) {
	defer conn.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() { _, _ = io.Copy(up, conn) }()
	limit := int64(40<<10 + rand.IntN(120<<10))
	if n, err := io.CopyN(conn, up, limit); n == limit && err == nil {
		c.cuts.Add(1)
		if tc, ok := conn.(*net.TCPConn); ok && rst {
			_ = tc.SetLinger(0)
		}
	}
}

// follower follows url and returns the lines it received.
type follower func(ctx context.Context, url string) ([]string, error)

func decode(v string) string {
	if v == "" || v[0] != '\x1e' {
		return v
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
			if v[i] == 'r' {
				b.WriteByte('\r')
				continue
			}
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

func r3labs(ctx context.Context, url string) ([]string, error) {
	c := r3sse.NewClient(url)
	// Its default backoff grows to minutes and never shrinks back; a log
	// follower caps it, as its README shows.
	b := backoff.NewExponentialBackOff()
	b.MaxInterval = time.Second
	b.MaxElapsedTime = 0
	c.ReconnectStrategy = b
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got []string
	last := int64(-1)
	err := c.SubscribeRawWithContext(ctx, func(e *r3sse.Event) {
		switch string(e.Event) {
		case "log":
			// r3labs dispatches what it has of an event when its connection
			// is cut, with the last id it saw; shiplog's ids come after the
			// data, so an event whose id is not past the last one is one it
			// did not get whole.
			id, err := strconv.ParseInt(string(e.ID), 10, 64)
			if err != nil || id <= last {
				return
			}
			last = id
			for _, l := range strings.Split(string(e.Data), "\n") {
				got = append(got, decode(l))
			}
		case "end":
			cancel()
		}
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return got, err
	}
	return got, nil
}

func goSSE(ctx context.Context, url string) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	client := &gosse.Client{HTTPClient: http.DefaultClient, Backoff: gosse.Backoff{InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second}}
	conn := client.NewConnection(req)
	var got []string
	last := int64(-1)
	conn.SubscribeEvent("log", func(e gosse.Event) {
		// Behind a proxy that ends the body cleanly where shiplog's
		// connection was cut (nginx's default HTTP/1.0 upstream), go-sse
		// hands over the part of an event it had, with the previous id:
		// keep an event only if its id is past the last one kept.
		id, err := strconv.ParseInt(e.LastEventID, 10, 64)
		if err != nil || id <= last {
			return
		}
		last = id
		for _, l := range strings.Split(e.Data, "\n") {
			got = append(got, decode(l))
		}
	})
	conn.SubscribeEvent("end", func(gosse.Event) { cancel() })
	if err := conn.Connect(); err != nil && !errors.Is(err, context.Canceled) {
		return got, err
	}
	return got, nil
}

// node runs node/follow.mjs with one of the npm clients.
func node(client string) follower {
	return func(ctx context.Context, url string) ([]string, error) {
		cmd := exec.CommandContext(ctx, "node", "node/follow.mjs", client, url)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("%v: %s", err, stderr.String())
		}
		if os.Getenv("INTEROP_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "%s said: %s", client, stderr.String())
		}
		var got []string
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			got = append(got, sc.Text())
		}
		return got, nil
	}
}

var clients = map[string]follower{
	"r3labs/sse":                    r3labs,
	"tmaxmax/go-sse":                goSSE,
	"npm eventsource 2":             node("eventsource2"),
	"npm eventsource 3":             node("eventsource3"),
	"npm eventsource 5":             node("eventsource5"),
	"@microsoft/fetch-event-source": node("fetch-event-source"),
}

// check reports lost, repeated and misordered lines.
func check(t *testing.T, got []string) {
	t.Helper()
	lost, dup := 0, 0
	seen := make([]int, lines+1)
	next := 1
	for _, l := range got {
		var n int
		if _, err := fmt.Sscanf(l, "line %d of the run", &n); err != nil || n < 1 || n > lines {
			t.Errorf("not a line of the run: %q", l)
			continue
		}
		if seen[n]++; seen[n] > 1 {
			dup++
		} else if n != next {
			t.Errorf("line %d came when line %d was due", n, next)
			next = n
		}
		next++
	}
	for n := 1; n <= lines; n++ {
		if seen[n] == 0 {
			lost++
		}
	}
	if lost > 0 || dup > 0 {
		t.Errorf("%d lines lost, %d repeated, of %d", lost, dup, lines)
	}
}

// Each client follows a 50,000-line run through a proxy that cuts it at
// random points, and must end with every line exactly once, on its own.
func TestClientsThroughCuts(t *testing.T) {
	s := startShiplog(t)
	proxy := newChaos(t, s.addr)
	for name, follow := range clients {
		t.Run(name, func(t *testing.T) {
			id := s.trigger(t)
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			before := proxy.cuts.Load()
			got, err := follow(ctx, fmt.Sprintf("%s/api/runs/%d/events", proxy.url(), id))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if ctx.Err() != nil {
				t.Fatalf("%s did not stop after the end (%d lines)", name, len(got))
			}
			cuts := proxy.cuts.Load() - before
			if cuts < 3 {
				t.Fatalf("only %d cuts: the test proves nothing", cuts)
			}
			check(t, got)
			t.Logf("%s: %d lines through %d cuts", name, len(got), cuts)
		})
	}
}

// freePort returns a loopback address nobody listens on yet.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProxy runs a reverse proxy (nginx or Caddy, from Debian) with conf,
// in which LISTEN and UPSTREAM are replaced, and waits until it answers.
func startProxy(t *testing.T, name, conf, upstream string) string {
	t.Helper()
	dir := t.TempDir()
	addr := freePort(t)
	conf = strings.NewReplacer("LISTEN", addr, "UPSTREAM", upstream, "DIR", dir).Replace(conf)
	path := filepath.Join(dir, "conf")
	os.WriteFile(path, []byte(conf), 0o644)
	var cmd *exec.Cmd
	switch name {
	case "nginx":
		os.Mkdir(filepath.Join(dir, "tmp"), 0o755)
		cmd = exec.Command("nginx", "-c", path, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	case "caddy":
		cmd = exec.Command("caddy", "run", "--config", path, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// nginx's workers outlive a killed master and hold its output open:
	// stop it as its service manager would (TERM), and do not wait on the
	// output for long.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v (CI installs it from Debian)", name, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	for until := time.Now().Add(20 * time.Second); ; {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return "http://" + addr
			}
		}
		if time.Now().After(until) {
			t.Fatalf("%s did not start:\n%s", name, out.String())
		}
		<-time.After(50 * time.Millisecond) // polling for the process to listen
	}
}

// The configurations people use in front of an SSE app. Not yet here:
// nginx with proxy_http_version 1.1 and gzip, Caddy with encode gzip, and
// HTTP/2 with TLS in front (see the README).
var proxies = []struct{ name, server, conf string }{
	{"nginx default proxy_pass", "nginx", `
daemon off;
worker_processes 1;
pid DIR/nginx.pid;
events {}
http {
  access_log off;
  client_body_temp_path DIR/tmp; proxy_temp_path DIR/tmp; fastcgi_temp_path DIR/tmp; uwsgi_temp_path DIR/tmp; scgi_temp_path DIR/tmp;
  server {
    listen LISTEN;
    location / { proxy_pass http://UPSTREAM; }
  }
}`},
}

// The same through nginx and Caddy, with the cuts between the proxy and
// shiplog: the proxy must pass a cut on as an error (or a clean end the
// client resumes from), never as a quiet end with lines missing.
func TestClientsThroughProxies(t *testing.T) {
	s := startShiplog(t)
	chaos := newChaos(t, s.addr)
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) {
			front := startProxy(t, p.server, p.conf, strings.TrimPrefix(chaos.url(), "http://"))
			for _, name := range []string{"tmaxmax/go-sse", "npm eventsource 3", "@microsoft/fetch-event-source"} {
				t.Run(name, func(t *testing.T) {
					id := s.trigger(t)
					ctx, cancel := context.WithTimeout(context.Background(), deadline)
					defer cancel()
					before := chaos.cuts.Load()
					got, err := clients[name](ctx, fmt.Sprintf("%s/api/runs/%d/events", front, id))
					if err != nil {
						t.Fatalf("%v", err)
					}
					if ctx.Err() != nil {
						t.Fatalf("did not stop after the end (%d lines)", len(got))
					}
					check(t, got)
					t.Logf("%s via %s: %d lines through %d cuts", name, p.name, len(got), chaos.cuts.Load()-before)
				})
			}
		})
	}
}
