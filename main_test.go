package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/jobs"
	"github.com/shiplog/shiplog/sse"
)

const deadline = 30 * time.Second

// testServer is the real server on a loopback port.
type testServer struct {
	t    *testing.T
	URL  string
	Data string
	Gate string // directory the gate jobs wait on
	bg   bool   // used from a goroutine other than the test's (see inBackground)
	stop func() // stops the server and waits for it (also at cleanup)
}

// inBackground is s for use from a goroutine the test started: a failure
// there is reported with Errorf and ends that goroutine, since Fatal may
// only be called from the test's own goroutine.
func (s *testServer) inBackground() *testServer {
	c := *s
	c.bg = true
	return &c
}

// fatalf fails the test and stops the calling goroutine.
func (s *testServer) fatalf(format string, args ...any) {
	s.t.Helper()
	if s.bg {
		s.t.Errorf(format, args...)
		runtime.Goexit()
	}
	s.t.Fatalf(format, args...)
}

// gateJob blocks until the test releases it (see release).
const gateScript = `
      echo "waiting for the gate"
      echo "::progress::1 waiting"
      while [ ! -e "$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.02; done
      echo "released"
`

// startServer runs shiplog on config yaml (with %[1]s replaced by a gate
// directory) until the test ends.
func startServer(t *testing.T, yaml string, tweaks ...func(*Config)) *testServer {
	t.Helper()
	dir, cfgPath, gate := writeConfig(t, yaml)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	cfg := Config{ConfigPath: cfgPath, configSet: true, DataDir: filepath.Join(dir, "data"),
		LogLevel: 8, ShutdownGrace: time.Second, Listener: ln, Ready: ready}
	for _, tw := range tweaks {
		tw(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, io.Discard) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	t.Cleanup(stop)
	select {
	case url := <-ready:
		return &testServer{t: t, URL: url, Data: cfg.DataDir, Gate: gate, stop: stop}
	case err := <-done:
		done <- nil // for the cleanup: serve has returned
		t.Fatalf("serve: %v", err)
	}
	return nil
}

// freeAddr returns a loopback address no one listens on now, for a
// process the test starts to listen on.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeConfig writes config yaml, with $$GATE replaced by a gate directory,
// into a new directory, for a server in or out of process.
func writeConfig(t *testing.T, yaml string) (dir, cfgPath, gate string) {
	t.Helper()
	dir = t.TempDir()
	gate = filepath.Join(dir, "gate")
	if err := os.Mkdir(gate, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath = filepath.Join(dir, "shiplog.yaml")
	if err := os.WriteFile(cfgPath, []byte(strings.ReplaceAll(yaml, "$$GATE", gate)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, cfgPath, gate
}

func (s *testServer) release(id int64) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.Gate, fmt.Sprintf("release-%d", id)), nil, 0o644); err != nil {
		s.fatalf("%v", err)
	}
}

// send makes a request, with headers given as name, value pairs.
func (s *testServer) send(ctx context.Context, method, path string, body io.Reader, hdr ...string) *http.Response {
	s.t.Helper()
	resp, err := s.request(ctx, method, path, body, hdr...)
	if err != nil {
		s.fatalf("%v", err)
	}
	return resp
}

// request is send that returns a transport error instead of failing. A
// body goes as JSON, as the CLI sends it, unless hdr says otherwise.
func (s *testServer) request(ctx context.Context, method, path string, body io.Reader, hdr ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if http.CanonicalHeaderKey(hdr[i]) == "Host" {
			req.Host = hdr[i+1] // net/http sends req.Host, not the header
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return http.DefaultClient.Do(req)
}

// do sends a request and returns status, headers and body.
func (s *testServer) do(method, path string, body string, hdr ...string) (int, http.Header, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	resp := s.send(context.Background(), method, path, rd, hdr...)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.fatalf("%v", err)
	}
	return resp.StatusCode, resp.Header, data
}

func (s *testServer) trigger(job string, params map[string]string) api.Run {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"params": params})
	code, hdr, data := s.do("POST", "/api/jobs/"+job+"/runs", string(body))
	if code != http.StatusCreated {
		s.fatalf("trigger %s: %d %s", job, code, data)
	}
	var run api.Run
	if err := json.Unmarshal(data, &run); err != nil {
		s.fatalf("%v", err)
	}
	if hdr.Get("Location") != fmt.Sprintf("/api/runs/%d", run.ID) {
		s.t.Errorf("Location = %q", hdr.Get("Location"))
	}
	return run
}

// waitRun long-polls the API until cond holds.
func (s *testServer) waitRun(id int64, cond func(*api.Run) bool) api.Run {
	s.t.Helper()
	return s.waitRunWithin(id, cond, deadline)
}

// waitRunAs is waitRun for a server with auth, as the caller token names.
func (s *testServer) waitRunAs(token string, id int64, cond func(*api.Run) bool) api.Run {
	s.t.Helper()
	return s.waitRunFor(token, id, cond, deadline)
}

// waitMetric polls /metrics until it has line, and returns the page.
func (s *testServer) waitMetric(line string) []byte {
	s.t.Helper()
	for until := time.Now().Add(deadline); ; {
		_, _, body := s.do("GET", "/metrics", "")
		if bytes.Contains(body, []byte(line+"\n")) {
			return body
		}
		if time.Now().After(until) {
			s.fatalf("metrics never had %q", line)
		}
		<-time.After(10 * time.Millisecond) // polling the metrics page
	}
}

// waitRunWithin is waitRun with a deadline of its own.
func (s *testServer) waitRunWithin(id int64, cond func(*api.Run) bool, within time.Duration) api.Run {
	s.t.Helper()
	return s.waitRunFor("", id, cond, within)
}

// waitRunFor long-polls with the typed client, as other Go programs would.
func (s *testServer) waitRunFor(token string, id int64, cond func(*api.Run) bool, within time.Duration) api.Run {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, err := api.New(s.URL, token)
	if err != nil {
		s.fatalf("%v", err)
	}
	etag := ""
	var run api.Run
	for ctx.Err() == nil {
		p, err := c.PollRun(ctx, id, etag, 10*time.Second)
		if se, ok := errors.AsType[*api.StatusError](err); ok && se.Status == http.StatusNotFound {
			// Not triggered yet (by a command the test started).
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.fatalf("poll run #%d: %v", id, err)
		}
		if p.Changed {
			run, etag = *p.Run, p.ETag
			if cond(&run) {
				return run
			}
		}
	}
	s.fatalf("run #%d: condition not met; last %+v", id, run)
	return run
}

func isFinished(r *api.Run) bool { return r.State.Finished() }
func isWaiting(r *api.Run) bool  { return r.Progress.Message == "waiting" }

func (s *testServer) logFile(id int64) []byte {
	s.t.Helper()
	data, err := os.ReadFile(filepath.Join(s.Data, "logs", fmt.Sprintf("%d.log", id)))
	if err != nil {
		s.fatalf("%v", err)
	}
	return data
}

// events reads an SSE stream until end (or n log events when n > 0).
type sseResult struct {
	lines  []string
	lastID string
	events []sse.Event
	ended  bool
}

func (s *testServer) events(path string, n int, hdr ...string) sseResult {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	resp := s.send(ctx, "GET", path, nil, hdr...)
	defer resp.Body.Close()
	var res sseResult
	if resp.StatusCode == 204 && (slices.Contains(hdr, "Last-Event-ID") || strings.Contains(path, "after=")) {
		// A resume at the end of a finished run: the stream is over.
		res.ended = true
		return res
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		s.fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
	dec := sse.NewDecoder(resp.Body)
	logs := 0
	for {
		ev, err := dec.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return res
			}
			s.fatalf("%s: %v", path, err)
		}
		res.events = append(res.events, ev)
		switch ev.Name {
		case "log":
			res.lines = append(res.lines, ev.Lines()...)
			res.lastID = ev.ID
			logs++
			if n > 0 && logs == n {
				return res
			}
		case "end":
			res.ended = true
			return res
		}
	}
}

func linesOf(data []byte) []string {
	s := strings.TrimSuffix(string(data), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestMain(m *testing.M) {
	jobs.Watchdog()
	// The test binary doubles as shiplog itself, so tests can run the
	// real program as a child process and kill it (see startChild).
	if v := os.Getenv("SHIPLOG_TEST_MAIN"); v != "" {
		var args []string
		if err := json.Unmarshal([]byte(v), &args); err != nil {
			panic(err)
		}
		os.Unsetenv("SHIPLOG_TEST_MAIN")
		os.Args = append([]string{"shiplog"}, args...)
		main()
		os.Exit(0)
	}
	// Called by a job as `shiplog` (DATA/bin/shiplog, see toolDir): the
	// test binary is shiplog then, as the real one would be.
	if filepath.Base(os.Args[0]) == "shiplog" {
		main()
		os.Exit(0)
	}
	// Runs started by tests must not see a server's SHIPLOG_* settings.
	for _, k := range []string{"SHIPLOG_SERVER", "SHIPLOG_CONFIG", "SHIPLOG_DATA", "SHIPLOG_ADDR", "SHIPLOG_TOKEN"} {
		os.Unsetenv(k)
	}
	os.Exit(m.Run())
}
