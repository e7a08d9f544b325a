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
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

var (
	shiplogBin string
	// certFile and keyFile: a certificate for 127.0.0.1 that the proxies
	// serve TLS with; httpClient trusts it and speaks HTTP/2 over TLS, as
	// Node does with NODE_EXTRA_CA_CERTS.
	certFile, keyFile string
	httpClient        *http.Client
)

func makeCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "shiplog interop"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	wires.base = &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}
	httpClient = &http.Client{Transport: &wires}
	return nil
}

// wires records the Go clients' requests and how each response ended, so
// that a client that fails shows what it saw on the wire.
var wires wireLog

type wireLog struct {
	base  http.RoundTripper
	mu    sync.Mutex
	start time.Time
	notes []string
}

func (w *wireLog) reset() {
	w.mu.Lock()
	w.start, w.notes = time.Now(), nil
	w.mu.Unlock()
}

func (w *wireLog) note(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.notes = append(w.notes, fmt.Sprintf("%8.3fs ", time.Since(w.start).Seconds())+fmt.Sprintf(format, args...))
	if len(w.notes) > 60 {
		w.notes = w.notes[len(w.notes)-40:]
	}
}

func (w *wireLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.notes, "\n")
}

func (w *wireLog) RoundTrip(req *http.Request) (*http.Response, error) {
	last := req.Header.Get("Last-Event-ID")
	resp, err := w.base.RoundTrip(req)
	if err != nil {
		w.note("GET from %q: %v", last, err)
		return nil, err
	}
	w.note("GET from %q: %s %s", last, resp.Proto, resp.Status)
	resp.Body = &wireBody{ReadCloser: resp.Body, w: w}
	return resp, nil
}

type wireBody struct {
	io.ReadCloser
	w     *wireLog
	n     int
	ended bool
}

func (b *wireBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += n
	if err != nil && !b.ended {
		b.ended = true
		b.w.note("  body ended after %d bytes: %v", b.n, err)
	}
	return n, err
}

func (b *wireBody) Close() error {
	if !b.ended {
		b.ended = true
		b.w.note("  body closed after %d bytes", b.n)
	}
	return b.ReadCloser.Close()
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shiplog-interop-")
	if err != nil {
		panic(err)
	}
	shiplogBin = filepath.Join(dir, "shiplog")
	if err := makeCert(dir); err != nil {
		panic(err)
	}
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
	dir  string // the held job's working directory
}

func startShiplog(t testing.TB) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "shiplog.yaml")
	// 50,000 lines in bursts: live batches and catch-up alike.
	// held: prints a line, then waits for the test to create "go" (after
	// it has seen that line) before printing the last one.
	// stamps: a line every 20 ms, each its own time in nanoseconds.
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
jobs:
  lines:
    run: awk 'BEGIN { for (i = 1; i <= %d; i++) { printf "line %%d of the run\n", i; if (i %% 2000 == 0) { fflush(); system("sleep 0.05") } } }'
  held:
    dir: %s
    run: rm -f go; printf "first %%02000d\\n" 0; while [ ! -e go ]; do sleep 0.01; done; echo second
  stamps:
    run: for i in $(seq %d); do date +%%s%%N; sleep 0.02; done
`, lines, dir, stampLines)), 0o644)
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
	s := &server{url: "http://" + addr, addr: addr, dir: dir}
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

func (s *server) trigger(t testing.TB, job ...string) int64 {
	t.Helper()
	name := "lines"
	if len(job) > 0 {
		name = job[0]
	}
	resp, err := http.Post(s.url+"/api/jobs/"+name+"/runs", "application/json", strings.NewReader("{}"))
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

// tcpProxy accepts connections, dials target for each and hands both to
// serve (its i counts the connections). At the test's end it closes the
// connections still open: a proxy's idle keep-alive would hold the test.
type tcpProxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu   sync.Mutex
	open map[net.Conn]bool
}

func startTCPProxy(t *testing.T, target string, serve func(conn, up net.Conn, i int)) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, open: map[net.Conn]bool{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for i := 0; ; i++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				conn.Close()
				continue
			}
			p.track(true, conn, up)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer p.track(false, conn, up)
				defer conn.Close()
				defer up.Close()
				go func() { _, _ = io.Copy(up, conn) }()
				serve(conn, up, i)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.open {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) track(open bool, conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		if open {
			p.open[c] = true
		} else {
			delete(p.open, c)
		}
	}
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

// chaos is a TCP proxy that cuts each connection after a random number of
// bytes from the server (somewhere inside an event, mostly), closing it
// with a FIN or a RST in turn; every third cut falls just after an id:
// line, before the blank line that ends its event (the one byte where a
// client that keeps ids as it reads them loses the event). Each connection
// gets at least one whole event through, so a client that resumes
// correctly always gets further.
type chaos struct {
	*tcpProxy
	cuts atomic.Int64
}

func newChaos(t *testing.T, target string) *chaos {
	t.Helper()
	c := &chaos{}
	c.tcpProxy = startTCPProxy(t, target, func(conn, up net.Conn, i int) { c.serve(conn, up, i%2 == 0, i%3 == 2) })
	return c
}

func (c *chaos) url() string { return "http://" + c.addr() }

func (c *chaos) serve(conn, up net.Conn, rst, afterID bool) {
	limit := 40<<10 + rand.IntN(120<<10)
	buf := make([]byte, 32<<10)
	for sent := 0; ; {
		n, err := up.Read(buf)
		if sent+n > limit {
			k := limit - sent
			if afterID {
				if k = idLineEnd(buf[:n], max(k, 0)); k < 0 {
					// No whole id: line past the limit in this read: look on.
					if _, werr := conn.Write(buf[:n]); werr != nil || err != nil {
						return
					}
					sent += n
					continue
				}
			}
			_, _ = conn.Write(buf[:k])
			c.cuts.Add(1)
			if tc, ok := conn.(*net.TCPConn); ok && rst {
				_ = tc.SetLinger(0)
			}
			return
		}
		if _, werr := conn.Write(buf[:n]); werr != nil || err != nil {
			return
		}
		sent += n
	}
}

// idLineEnd returns where the first whole "id:" line at or after from in
// b ends (just after its newline), or -1.
func idLineEnd(b []byte, from int) int {
	i := bytes.Index(b[from:], []byte("\nid: "))
	if i < 0 {
		return -1
	}
	start := from + i + 1
	j := bytes.IndexByte(b[start:], '\n')
	if j < 0 {
		return -1
	}
	return start + j + 1
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

// snippet: r3labs/sse
func r3labs(ctx context.Context, url string) ([]string, error) {
	c := r3sse.NewClient(url)
	c.Connection = httpClient
	// Its default backoff grows to minutes and never shrinks back; a log
	// follower caps it, as its README shows.
	b := backoff.NewExponentialBackOff()
	b.MaxInterval = time.Second
	b.MaxElapsedTime = 0
	var got []string
	last, ended := int64(-1), false
	// A 204 is the end too: the stream was cut after the last line, before
	// "end" (r3labs would retry it forever).
	c.ResponseValidator = func(_ *r3sse.Client, resp *http.Response) error {
		switch resp.StatusCode {
		case http.StatusOK:
			return nil
		case http.StatusNoContent:
			ended = true
			resp.Body.Close()
			return backoff.Permanent(errors.New("no content: the run has ended"))
		}
		resp.Body.Close()
		return fmt.Errorf("could not connect to stream: %s", resp.Status)
	}
	handle := func(e *r3sse.Event) {
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
			ended = true
		}
	}
	for !ended {
		// r3labs returns when a stream ends cleanly, as a cut one does
		// behind a proxy that cannot tell (nginx's default HTTP/1.0
		// upstream): subscribe again until "end"; it sends the last id.
		sub, cancel := context.WithCancel(ctx)
		// Its retries heed the context only when the strategy does.
		c.ReconnectStrategy = backoff.WithContext(b, sub)
		err := c.SubscribeRawWithContext(sub, func(e *r3sse.Event) {
			if handle(e); ended {
				cancel()
			}
		})
		cancel()
		if ctx.Err() != nil {
			return got, ctx.Err()
		}
		if err != nil && !ended && !errors.Is(err, context.Canceled) {
			return got, err
		}
	}
	return got, nil
}

// end snippet

// snippet: tmaxmax/go-sse
func goSSE(ctx context.Context, url string) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	// A 204 is the end too: the stream was cut after the last line, before
	// "end" (go-sse would return it as an error).
	ended := errors.New("the run has ended")
	client := &gosse.Client{
		HTTPClient: httpClient,
		Backoff:    gosse.Backoff{InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second},
		ResponseValidator: func(r *http.Response) error {
			if r.StatusCode == http.StatusNoContent {
				return ended
			}
			return gosse.DefaultValidator(r)
		},
	}
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
	if err := conn.Connect(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ended) {
		return got, err
	}
	return got, nil
}

// end snippet

// node runs node/follow.mjs with one of the npm clients.
func node(client string) follower {
	return func(ctx context.Context, url string) ([]string, error) {
		cmd := exec.CommandContext(ctx, "node", "node/follow.mjs", client, url)
		cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+certFile)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil && ctx.Err() == nil {
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

// followRun follows url with follow, within the deadline, and returns the
// lines it got. A Go client that fails shows its requests and how each
// response ended.
func followRun(t *testing.T, follow follower, url string) []string {
	t.Helper()
	wires.reset()
	t.Cleanup(func() {
		if t.Failed() && wires.String() != "" {
			t.Logf("the Go client's last requests:\n%s", wires.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	got, err := follow(ctx, url)
	if err != nil {
		t.Fatalf("%v (%d lines)", err, len(got))
	}
	if ctx.Err() != nil {
		t.Fatalf("did not stop after the end (%d lines)", len(got))
	}
	return got
}

// Each client follows a 50,000-line run through a proxy that cuts it at
// random points, and must end with every line exactly once, on its own.
func TestClientsThroughCuts(t *testing.T) {
	s := startShiplog(t)
	proxy := newChaos(t, s.addr)
	for name, follow := range clients {
		t.Run(name, func(t *testing.T) {
			before := proxy.cuts.Load()
			got := followRun(t, follow, fmt.Sprintf("%s/api/runs/%d/events", proxy.url(), s.trigger(t)))
			cuts := proxy.cuts.Load() - before
			if cuts < 3 {
				t.Fatalf("only %d cuts: the test proves nothing", cuts)
			}
			check(t, got)
			t.Logf("%s: %d lines through %d cuts", name, len(got), cuts)
		})
	}
}

// endCuts is a TCP proxy that cuts the streams that reach a run's end:
// the first just after the last log event's id: line, before the blank
// line that ends that event, and the later ones just before "event: end".
// A client then resumes one event short of the end, or at the very end of
// a finished run, where shiplog answers 204: it must keep every line and
// take the 204 as the end.
type endCuts struct {
	*tcpProxy
	cuts atomic.Int64
}

func newEndCuts(t *testing.T, target string) *endCuts {
	t.Helper()
	c := &endCuts{}
	c.tcpProxy = startTCPProxy(t, target, func(conn, up net.Conn, _ int) { c.serve(conn, up) })
	return c
}

func (c *endCuts) serve(conn, up net.Conn) {
	end := []byte("event: end\n")
	var pending []byte
	stream := false // inside an event stream's body
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		pending = append(pending, buf[:n]...)
		// A response that is not an event stream (a 204) goes through
		// whole: held back, it would wait for the connection's idle end.
		for !stream {
			k := bytes.Index(pending, []byte("\r\n\r\n"))
			if k < 0 {
				break
			}
			head := pending[:k+4]
			if stream = bytes.Contains(head, []byte("text/event-stream")); !stream {
				if _, err := conn.Write(head); err != nil {
					return
				}
				pending = append(pending[:0], pending[k+4:]...)
			}
		}
		if i := bytes.Index(pending, end); stream && i >= 0 {
			cut := i
			if c.cuts.Add(1) == 1 {
				if j := bytes.LastIndex(pending[:i], []byte("\nid: ")); j >= 0 {
					cut = j + 1 + bytes.IndexByte(pending[j+1:], '\n') + 1
				}
			}
			_, _ = conn.Write(pending[:cut])
			return
		}
		if err != nil {
			_, _ = conn.Write(pending)
			return
		}
		if !stream {
			continue
		}
		// Hold back the last id: line (it may be the last event's) and
		// what may be the start of "event: end".
		keep := max(len(pending)-len(end)+1, 0)
		if j := bytes.LastIndex(pending, []byte("\nid: ")); j >= 0 {
			keep = min(keep, j)
		}
		if _, err := conn.Write(pending[:keep]); err != nil {
			return
		}
		pending = append(pending[:0], pending[keep:]...)
	}
}

// Each client follows a run through cuts at its end (endCuts) and must
// stop there by itself with every line exactly once.
func TestClientsStopAtTheEnd(t *testing.T) {
	s := startShiplog(t)
	for _, name := range slices.Sorted(maps.Keys(clients)) {
		t.Run(name, func(t *testing.T) {
			proxy := newEndCuts(t, s.addr)
			got := followRun(t, clients[name], fmt.Sprintf("http://%s/api/runs/%d/events", proxy.addr(), s.trigger(t)))
			if cuts := proxy.cuts.Load(); cuts < 1 {
				t.Fatalf("only %d cuts: the test proves nothing", cuts)
			}
			check(t, got)
		})
	}
}

// freePort returns a loopback address nobody listens on yet.
func freePort(t testing.TB) string {
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
func startProxy(t testing.TB, name, conf, upstream string) string {
	t.Helper()
	dir := t.TempDir()
	addr := freePort(t)
	conf = strings.NewReplacer("LISTEN", addr, "UPSTREAM", upstream, "DIR", dir, "CERT", certFile, "KEY", keyFile).Replace(conf)
	scheme := "http"
	if strings.Contains(conf, certFile) {
		scheme = "https"
	}
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
		if resp, err := httpClient.Get(scheme + "://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if scheme == "https" && resp.ProtoMajor != 2 {
					t.Fatalf("%s answered with %s over TLS, not HTTP/2", name, resp.Proto)
				}
				return scheme + "://" + addr
			}
		}
		if time.Now().After(until) {
			t.Fatalf("%s did not start:\n%s", name, out.String())
		}
		<-time.After(50 * time.Millisecond) // polling for the process to listen
	}
}

// The configurations people use in front of an SSE app: nginx as its
// default proxy_pass leaves it (HTTP/1.0 to the upstream) and as SSE
// guides set it up (HTTP/1.1, keep-alive, gzip on for event streams too),
// Caddy's reverse_proxy alone and with encode gzip, and each of them
// terminating TLS with HTTP/2 (CERT and KEY: a certificate made by the
// test).
var proxies = []struct{ name, server, conf string }{
	{"nginx default proxy_pass", "nginx", nginxConf(`listen LISTEN;`, `proxy_pass http://UPSTREAM;`)},
	{"nginx HTTP/1.1 upstream, gzip", "nginx", nginxConf(`listen LISTEN;`, `
      proxy_pass http://UPSTREAM;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      gzip on;
      gzip_proxied any;
      gzip_types text/event-stream application/json text/plain;`)},
	{"nginx HTTP/2 with TLS", "nginx", nginxConf(`listen LISTEN ssl http2; ssl_certificate CERT; ssl_certificate_key KEY;`, `
      proxy_pass http://UPSTREAM;
      proxy_http_version 1.1;
      proxy_set_header Connection "";`)},
	{"Caddy reverse_proxy", "caddy", caddyConf("http://LISTEN", `reverse_proxy UPSTREAM`)},
	{"Caddy encode gzip", "caddy", caddyConf("http://LISTEN", "encode gzip\n  reverse_proxy UPSTREAM")},
	{"Caddy HTTP/2 with TLS", "caddy", caddyConf("https://LISTEN", "tls CERT KEY\n  reverse_proxy UPSTREAM")},
}

func nginxConf(listen, location string) string {
	return `
daemon off;
worker_processes 1;
pid DIR/nginx.pid;
events {}
http {
  access_log off;
  client_body_temp_path DIR/tmp; proxy_temp_path DIR/tmp; fastcgi_temp_path DIR/tmp; uwsgi_temp_path DIR/tmp; scgi_temp_path DIR/tmp;
  server {
    ` + listen + `
    location / { ` + location + ` }
  }
}`
}

func caddyConf(site, directives string) string {
	return "{\n  admin off\n  auto_https off\n}\n" + site + " {\n  " + directives + "\n}\n"
}

// The same through nginx and Caddy, with the cuts between the proxy and
// shiplog: the proxy must pass a cut on as an error (or a clean end the
// client resumes from), never as a quiet end with lines missing.
func TestClientsThroughProxies(t *testing.T) {
	s := startShiplog(t)
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) {
			chaos := newChaos(t, s.addr)
			front := startProxy(t, p.server, p.conf, strings.TrimPrefix(chaos.url(), "http://"))
			// One client at a time, so that a failure is its own.
			t.Cleanup(func() { t.Logf("%d cuts between %s and shiplog", chaos.cuts.Load(), p.name) })
			for _, name := range slices.Sorted(maps.Keys(clients)) {
				t.Run(name, func(t *testing.T) {
					got := followRun(t, clients[name], fmt.Sprintf("%s/api/runs/%d/events", front, s.trigger(t)))
					check(t, got)
					t.Logf("%s via %s: %d lines", name, p.name, len(got))
				})
			}
		})
	}
}

// sseLines reads an event stream with a minimal parser and sends each log
// line, and when it arrived, until the end event or ctx's end.
func sseLines(ctx context.Context, url string, out chan<- arrival) error {
	defer close(out)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	event := ""
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "event: "):
			event = l[len("event: "):]
			if event == "end" {
				return nil
			}
		case strings.HasPrefix(l, "data: ") && event == "log":
			out <- arrival{decode(l[len("data: "):]), time.Now()}
		case l == "":
			event = ""
		}
	}
	return sc.Err()
}

type arrival struct {
	line string
	at   time.Time
}

// newJoiner starts a TCP proxy to target that passes on an event
// stream's first kilobyte as one write, as a busy network or proxy does when
// shiplog's first small write and the next arrive before it reads: a proxy
// then sees the stream start with more than its first write.
func newJoiner(t *testing.T, target string) string {
	t.Helper()
	return startTCPProxy(t, target, func(conn, up net.Conn, _ int) {
		// Other responses (health checks) pass as they come.
		var head []byte
		buf := make([]byte, 32<<10)
		for {
			n, err := up.Read(buf)
			head = append(head, buf[:n]...)
			if err != nil {
				_, _ = conn.Write(head)
				return
			}
			if h, _, ok := bytes.Cut(head, []byte("\r\n\r\n")); ok && (!bytes.Contains(h, []byte("text/event-stream")) || len(head) >= 1024) {
				break
			}
		}
		if _, err := conn.Write(head); err != nil {
			return
		}
		_, _ = io.Copy(conn, up)
	}).addr()
}

// No proxy in its common configuration holds a line back: the job prints
// one line and waits, and the line must reach the client through the
// proxy while the job waits (it waits for the test, which waits for the
// line; a buffering proxy fails by the deadline).
func TestNoProxyHoldsALine(t *testing.T) {
	s := startShiplog(t)
	fronts := map[string]string{"direct": s.url}
	joined := newJoiner(t, s.addr)
	for _, p := range proxies {
		fronts[p.name] = startProxy(t, p.server, p.conf, joined)
	}
	for name, front := range fronts {
		t.Run(name, func(t *testing.T) {
			id := s.trigger(t, "held")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got := make(chan arrival)
			errc := make(chan error, 1)
			go func() { errc <- sseLines(ctx, fmt.Sprintf("%s/api/runs/%d/events", front, id), got) }()
			var lines []string
			for a := range got {
				lines = append(lines, a.line)
				if strings.HasPrefix(a.line, "first ") {
					// Seen while the job waits: let it finish.
					if err := os.WriteFile(filepath.Join(s.dir, "go"), nil, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := <-errc; err != nil {
				t.Fatalf("%v (lines so far: %q)", err, lines)
			}
			if len(lines) != 2 || lines[0] != first || lines[1] != "second" {
				t.Fatalf("got %q", lines)
			}
		})
	}
}

// first: the held job's first line, long enough that a proxy which reads
// it with the stream's start sees more than 512 bytes at once.
var first = "first " + strings.Repeat("0", 2000)

const stampLines = 150

// BenchmarkLineLatency measures how long a line takes from the job's
// output to a client, directly and through each proxy, on loopback: the
// job prints its clock every 20 ms and the client subtracts it from its
// own. Reported per front: p50 and p99, and the p50 and p99 added over
// direct, measured in the same run.
//
//	go test -run '^$' -bench LineLatency -benchtime 1x
func BenchmarkLineLatency(b *testing.B) {
	s := startShiplog(b)
	type front struct{ name, url string }
	fronts := []front{{"direct", s.url}}
	for _, p := range proxies {
		fronts = append(fronts, front{p.name, startProxy(b, p.server, p.conf, s.addr)})
	}
	var base [2]time.Duration
	for _, f := range fronts {
		b.Run(strings.NewReplacer(" ", "_", "/", "").Replace(f.name), func(b *testing.B) {
			var lat []time.Duration
			for range b.N {
				id := s.trigger(b, "stamps")
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				got := make(chan arrival, stampLines)
				errc := make(chan error, 1)
				go func() { errc <- sseLines(ctx, fmt.Sprintf("%s/api/runs/%d/events", f.url, id), got) }()
				for a := range got {
					ns, err := strconv.ParseInt(a.line, 10, 64)
					if err != nil {
						b.Fatalf("not a stamp: %q", a.line)
					}
					lat = append(lat, a.at.Sub(time.Unix(0, ns)))
				}
				cancel()
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
			// The first lines can come from the file rather than live.
			lat = lat[min(len(lat), 5):]
			if len(lat) == 0 {
				b.Fatal("no lines")
			}
			slices.Sort(lat)
			p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
			if f.name == "direct" {
				base = [2]time.Duration{p50, p99}
			}
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64((p50-base[0]).Microseconds())/1000, "p50-over-direct-ms")
			b.ReportMetric(float64((p99-base[1]).Microseconds())/1000, "p99-over-direct-ms")
		})
	}
}
