package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
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
	fmt.Fprintf(c, "GET /api/jobs HTTP/1.1\r\nHost: shiplog\r\nX-Slow: ") // and no more
	if code, _, _ := s.do("GET", "/api/jobs", ""); code != http.StatusOK {
		t.Errorf("a whole request beside it: %d", code)
	}
	c.SetReadDeadline(time.Now().Add(deadline))
	buf := make([]byte, 512)
	var got []byte
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("still connected after %v", deadline)
			}
			break // closed by the server
		}
	}
	if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408") {
		t.Errorf("answered %q", got)
	}
}
