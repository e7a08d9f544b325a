package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/api"
)

func TestStreamCapsAndTriggerRateLimit(t *testing.T) {
	s := startServer(t, apiConfig, func(c *Config) {
		c.Limits = Limits{Streams: 3, StreamsPerClient: 2, TriggersPerMinute: 3}
	})
	run := s.trigger("gate", nil)
	s.waitRun(run.ID, isWaiting)
	path := fmt.Sprintf("/api/runs/%d/events", run.ID)

	open := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, func() { cancel(); resp.Body.Close() }
	}
	r1, close1 := open()
	r2, close2 := open()
	defer close2()
	if r1.StatusCode != 200 || r2.StatusCode != 200 {
		t.Fatalf("first two streams: %d %d", r1.StatusCode, r2.StatusCode)
	}
	code, hdr, body := s.do("GET", path, "")
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Errorf("third stream from one client: %d %v %s", code, hdr, body)
	}
	// A closed stream frees its slot (the server sees the close a moment
	// later: wait for the slot, with a deadline).
	close1()
	freed := false
	for until := time.Now().Add(deadline); !freed && time.Now().Before(until); {
		resp, cancel := open()
		freed = resp.StatusCode == 200
		cancel()
		if !freed {
			<-time.After(10 * time.Millisecond) // the server has not seen the close yet
		}
	}
	if !freed {
		t.Error("a closed stream's slot was not freed")
	}

	// Two triggers fit in the remaining burst (one was spent above); the
	// next is refused with a wait.
	for i := range 2 {
		if code, _, body := s.do("POST", "/api/jobs/quick/runs", "{}"); code != 201 {
			t.Fatalf("trigger %d: %d %s", i+2, code, body)
		}
	}
	code, hdr, _ = s.do("POST", "/api/jobs/quick/runs", "{}")
	if code != http.StatusTooManyRequests {
		t.Fatalf("fourth trigger in a minute: %d", code)
	}
	if secs, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || secs < 1 || secs > 20 {
		t.Errorf("Retry-After %q", hdr.Get("Retry-After"))
	}
	s.release(run.ID)
}

// A client that never finishes its request headers is disconnected, and
// holds nothing up: a whole request beside it is answered.
func TestSlowHeadersAreCutOff(t *testing.T) {
	s := startServer(t, apiConfig, func(c *Config) { c.HeaderTimeout = 200 * time.Millisecond })
	c, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ") // and no more
	if code, _, _ := s.do("GET", "/api/jobs", ""); code != http.StatusOK {
		t.Errorf("a whole request beside it: %d", code)
	}
	// Well under the 10 s default, so a server that ignored the configured
	// 200 ms would fail here.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	var got []byte
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("still connected after 5s: the header timeout was not applied")
			}
			break // closed by the server
		}
	}
	if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408") {
		t.Errorf("answered %q", got)
	}
}

// X-Forwarded-For is anyone's to write: it names the client only when it
// comes from a proxy the operator listed.
func TestForwardedForOnlyFromTrustedProxies(t *testing.T) {
	for _, tt := range []struct {
		name    string
		proxies string
		want    string
	}{
		{"no proxies listed", "", "anonymous@127.0.0.1"},
		{"another proxy listed", "10.0.0.0/8", "anonymous@127.0.0.1"},
		{"loopback proxy listed", "127.0.0.1", "anonymous@203.0.113.9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proxies, err := parseCIDRs(tt.proxies)
			if err != nil {
				t.Fatal(err)
			}
			s := startServer(t, apiConfig, func(c *Config) {
				c.TrustedProxies = proxies
				c.Limits = Limits{TriggersPerMinute: 2}
			})
			for i := range 3 {
				xff := fmt.Sprintf("203.0.113.%d", 9+i) // a fresh one each time
				if tt.proxies == "127.0.0.1" {
					xff = "203.0.113.9" // the proxy says the same client
				}
				code, _, body := s.do("POST", "/api/jobs/quick/runs", "{}", "X-Forwarded-For", xff)
				if i < 2 {
					var r api.Run
					if code != 201 || json.Unmarshal(body, &r) != nil {
						t.Fatalf("trigger %d: %d %s", i, code, body)
					}
					if i == 0 && r.TriggeredBy != tt.want {
						t.Errorf("triggered_by %q, want %q", r.TriggeredBy, tt.want)
					}
					continue
				}
				// A new header per request does not make a new client.
				if code != http.StatusTooManyRequests {
					t.Errorf("third trigger with a fresh X-Forwarded-For: %d, want 429", code)
				}
			}
		})
	}
}

// Ordinary answers are bounded in time; streams and long polls are not cut
// by that bound.
func TestWriteTimeoutSparesStreamsAndLongPolls(t *testing.T) {
	s := startServer(t, apiConfig, func(c *Config) { c.WriteTimeout = 200 * time.Millisecond })
	run := s.trigger("gate", nil)
	s.waitRun(run.ID, isWaiting)
	_, hdr, _ := s.do("GET", fmt.Sprintf("/api/runs/%d", run.ID), "")
	start := time.Now()
	code, _, _ := s.do("GET", fmt.Sprintf("/api/runs/%d?wait=1s", run.ID), "", "If-None-Match", hdr.Get("ETag"))
	if code != http.StatusNotModified || time.Since(start) < time.Second {
		t.Errorf("long poll past the write timeout: %d after %v", code, time.Since(start))
	}
	code, hdr, body := s.do("GET", fmt.Sprintf("/api/runs/%d/log?after=0", run.ID), "")
	if code != 200 || !strings.Contains(string(body), "waiting for the gate") {
		t.Fatalf("log poll: %d %q", code, body)
	}
	start = time.Now()
	code, _, body = s.do("GET", fmt.Sprintf("/api/runs/%d/log?after=%s&wait=1s", run.ID, hdr.Get("X-Log-Offset")), "")
	if code != 200 || len(body) != 0 || time.Since(start) < time.Second {
		t.Errorf("log long poll past the write timeout: %d %q after %v", code, body, time.Since(start))
	}
	released := make(chan error, 1)
	go func() {
		<-time.After(time.Second) // the stream outlives the write timeout
		released <- os.WriteFile(filepath.Join(s.Gate, fmt.Sprintf("release-%d", run.ID)), nil, 0o644)
	}()
	res := s.events(fmt.Sprintf("/api/runs/%d/events", run.ID), 0)
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if !res.ended || !slices.Contains(res.lines, "released") {
		t.Errorf("stream past the timeouts: ended=%v lines=%q", res.ended, res.lines)
	}
}

// A flood of idle connections cannot take the descriptors a deploy needs:
// the server caps connections below its open-file limit.
func TestIdleConnectionFloodDoesNotStopDeploys(t *testing.T) {
	dir, cfg, gate := writeConfig(t, `
max_concurrent_runs: 1
jobs:
  gate:
    env: {GATE: $$GATE}
    run: |`+gateScript+`
  quick:
    run: echo quick
`)
	// The child's hard limit is low, so it cannot raise its way out.
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatal("prlimit (util-linux) is needed for this test")
	}
	data := filepath.Join(dir, "data")
	c := startChildWith(t, []string{prlimit, "--nofile=300:300", os.Args[0]}, "--config", cfg, "--data", data)
	s := &testServer{t: t, URL: c.URL, Gate: gate}
	held := s.trigger("gate", nil)
	s.waitRun(held.ID, isWaiting)
	queued := s.trigger("quick", nil) // starts only once held ends
	addr := strings.TrimPrefix(c.URL, "http://")
	var conns []net.Conn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	defer closeAll()
	for range 400 {
		c, err := net.Dial("tcp", addr) // accepted, or queued by the kernel
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	// The queued run starts during the flood: it opens its log, index and
	// times files and a pipe.
	s.release(held.ID)
	logPath := filepath.Join(data, "logs", fmt.Sprintf("%d.log", queued.ID))
	waitFor(t, "the queued run's output", func() bool {
		b, _ := os.ReadFile(logPath)
		return string(b) == "quick\n"
	}, deadline)
	closeAll()
	if got := s.waitRun(queued.ID, isFinished); got.State != "succeeded" {
		t.Fatalf("run started during the flood: %s (%s)", got.State, got.Error)
	}
}
