package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/sse"
)

const eventsConfig = `
max_concurrent_runs: 30
jobs:
  printer:
    env: {GATE: $$GATE}
    params: [{name: N, default: "500"}]
    run: |
      echo "::progress::1 waiting"
      while [ ! -e "$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done
      i=0
      while [ $i -lt $N ]; do i=$((i+1)); echo "line $i of $N"; done
      printf 'bar 10%%\rbar 100%%\n'
      printf 'nul\000 and bad \377 utf8\n'
      printf 'no newline at the end'
  quick:
    run: |
      for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i"; done
`

func TestEventsReplayResumeAndTail(t *testing.T) {
	s := startServer(t, eventsConfig)
	run := s.trigger("printer", map[string]string{"N": "2000"})
	s.waitRun(run.ID, isWaiting)
	path := fmt.Sprintf("/api/runs/%d/events", run.ID)

	// A viewer watching live, and one that drops and resumes with its last id
	// several times while the job prints.
	var live sseResult
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); live = s.inBackground().events(path, 0) }()
	s.release(run.ID)
	var resumed []string
	lastID := "0"
	for reconnects := 0; ; reconnects++ {
		res := s.events(path, 3, "Last-Event-ID", lastID)
		resumed = append(resumed, res.lines...)
		if res.lastID != "" {
			lastID = res.lastID
		}
		if res.ended {
			break
		}
	}
	wg.Wait()
	want := linesOf(s.logFile(run.ID))
	if len(want) != 2004 {
		t.Fatalf("log has %d lines", len(want))
	}
	if strings.Join(live.lines, "\n") != strings.Join(want, "\n") || !live.ended {
		t.Errorf("live viewer got %d lines (ended %v), want %d", len(live.lines), live.ended, len(want))
	}
	if strings.Join(resumed, "\n") != strings.Join(want, "\n") {
		t.Errorf("resuming viewer got %d lines, want %d", len(resumed), len(want))
	}
	if want[2001] != "bar 10%\rbar 100%" || want[2002] != "nul\x00 and bad \xff utf8" || want[2003] != "no newline at the end" {
		t.Errorf("special lines: %q", want[2001:])
	}
	// The stream's shape: window first, statuses, the end carries the final run.
	first := live.events[0]
	if first.Name != "window" || first.Data[0] != `{"line":1,"offset":0}` {
		t.Errorf("first event %+v", first)
	}
	end := live.events[len(live.events)-1]
	if end.Name != "end" || !strings.Contains(end.Data[0], `"state":"succeeded"`) {
		t.Errorf("end event %+v", end)
	}

	// A finished run replays; ?tail=N starts N lines from the end, ?after at
	// an offset.
	res := s.events(path+"?tail=3", 0)
	if strings.Join(res.lines, "\n") != strings.Join(want[len(want)-3:], "\n") || !res.ended {
		t.Errorf("tail=3: %q", res.lines)
	}
	if res.events[0].Data[0] != fmt.Sprintf(`{"line":%d,"offset":%d}`, len(want)-2, offsetOfLine(s.logFile(run.ID), len(want)-3)) {
		t.Errorf("tail window %v", res.events[0].Data)
	}
	off := offsetOfLine(s.logFile(run.ID), 1000)
	res = s.events(path+"?after="+strconv.Itoa(off), 0)
	if len(res.lines) != len(want)-1000 || res.lines[0] != want[1000] {
		t.Errorf("after: %d lines from %q", len(res.lines), res.lines[0])
	}

	res = s.events(path+"?line=1001", 0)
	if len(res.lines) != len(want)-1000 || res.lines[0] != want[1000] || res.events[0].Data[0] != fmt.Sprintf(`{"line":1001,"offset":%d}`, off) {
		t.Errorf("line=1001: %d lines from %q, window %v", len(res.lines), res.lines[0], res.events[0].Data)
	}
	if code, _, _ := s.do("GET", path+"?line=999999", ""); code != 400 {
		t.Errorf("line past the end: %d", code)
	}

	// Headers.
	code, hdr, _ := s.do("GET", path+"?tail=0", "")
	if code != 200 || hdr.Get("Content-Type") != "text/event-stream; charset=utf-8" ||
		hdr.Get("Cache-Control") != "no-cache, no-transform" || hdr.Get("X-Accel-Buffering") != "no" || hdr.Get("Content-Encoding") != "identity" {
		t.Errorf("headers %d %v", code, hdr)
	}
}

// offsetOfLine is the byte offset where 0-based line n starts.
func offsetOfLine(data []byte, n int) int {
	off := 0
	for range n {
		off += strings.IndexByte(string(data[off:]), '\n') + 1
	}
	return off
}

func TestRawLogAndLongPoll(t *testing.T) {
	s := startServer(t, eventsConfig)
	run := s.trigger("printer", map[string]string{"N": "100"})
	s.waitRun(run.ID, isWaiting)
	base := fmt.Sprintf("/api/runs/%d/log", run.ID)

	// Lines appear to a long poll as soon as they are written.
	code, hdr, body := s.do("GET", base+"?after=0&wait=1ms", "")
	if code != 200 || hdr.Get("X-Log-Complete") != "false" || hdr.Get("X-Run-State") != "running" {
		t.Fatalf("poll: %d %v %q", code, hdr, body)
	}
	var got []byte
	offset := hdr.Get("X-Log-Offset")
	got = append(got, body...)
	s.release(run.ID)
	for hdr.Get("X-Log-Complete") != "true" {
		code, hdr, body = s.do("GET", base+"?after="+offset+"&wait=30s", "")
		if code != 200 {
			t.Fatalf("poll: %d %s", code, body)
		}
		got = append(got, body...)
		offset = hdr.Get("X-Log-Offset")
	}
	if string(got) != string(s.logFile(run.ID)) {
		t.Errorf("long poll assembled %d bytes, log has %d", len(got), len(s.logFile(run.ID)))
	}
	// Raw, download and Range.
	code, hdr, body = s.do("GET", base, "")
	if code != 200 || string(body) != string(got) || hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("raw: %d %v", code, hdr)
	}
	_, hdr, _ = s.do("GET", base+"?download=1", "")
	if !strings.HasPrefix(hdr.Get("Content-Disposition"), "attachment;") {
		t.Errorf("download: %v", hdr)
	}
	code, _, body = s.do("GET", base, "", "Range", "bytes=0-9")
	if code != http.StatusPartialContent || string(body) != string(got[:10]) {
		t.Errorf("range: %d %q", code, body)
	}
}

// Every viewer gets every line: 1,000 on one running job, and 100 spread
// over 20 jobs.
func TestManyViewersGetEveryLine(t *testing.T) {
	if testing.Short() {
		t.Skip("many connections")
	}
	s := startServer(t, eventsConfig)
	check := func(t *testing.T, runs []api.Run, perRun int) {
		var wg sync.WaitGroup
		results := make([][]sseResult, len(runs))
		var started sync.WaitGroup
		for i, run := range runs {
			results[i] = make([]sseResult, perRun)
			for j := range perRun {
				wg.Add(1)
				started.Add(1)
				go func() {
					defer wg.Done()
					started.Done()
					results[i][j] = s.inBackground().events(fmt.Sprintf("/api/runs/%d/events", run.ID), 0)
				}()
			}
		}
		started.Wait()
		for _, run := range runs {
			s.release(run.ID)
		}
		wg.Wait()
		for i, run := range runs {
			want := strings.Join(linesOf(s.logFile(run.ID)), "\n")
			for j, res := range results[i] {
				if !res.ended || strings.Join(res.lines, "\n") != want {
					t.Fatalf("run #%d viewer %d: %d lines, ended %v", run.ID, j, len(res.lines), res.ended)
				}
			}
		}
	}
	t.Run("1000 viewers of one job", func(t *testing.T) {
		run := s.trigger("printer", map[string]string{"N": "300"})
		s.waitRun(run.ID, isWaiting)
		check(t, []api.Run{run}, 1000)
	})
	t.Run("100 viewers over 20 jobs", func(t *testing.T) {
		var runs []api.Run
		for range 20 {
			run := s.trigger("printer", map[string]string{"N": "300"})
			runs = append(runs, run)
		}
		for _, run := range runs {
			s.waitRun(run.ID, isWaiting)
		}
		check(t, runs, 5)
	})
}

func TestSearchWholeLog(t *testing.T) {
	s := startServer(t, eventsConfig)
	run := s.trigger("quick", nil)
	s.waitRun(run.ID, isFinished)
	log := s.logFile(run.ID)
	search := func(query string) (matches []map[string]any, summary map[string]any, code int) {
		t.Helper()
		code, _, body := s.do("GET", fmt.Sprintf("/api/runs/%d/search?%s", run.ID, query), "")
		if code != 200 {
			return nil, nil, code
		}
		for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			if m["done"] == true {
				summary = m
			} else {
				matches = append(matches, m)
			}
		}
		return matches, summary, code
	}
	m, sum, _ := search("q=LINE+1")
	if len(m) != 2 || m[0]["line"] != 1.0 || m[1]["line"] != 10.0 || m[1]["text"] != "line 10" || sum["matches"] != 2.0 {
		t.Errorf("case-insensitive: %v %v", m, sum)
	}
	if off := int(m[1]["offset"].(float64)); string(log[off:off+7]) != "line 10" {
		t.Errorf("offset %d", off)
	}
	if m, _, _ := search("q=LINE+1&case=1"); len(m) != 0 {
		t.Errorf("case-sensitive: %v", m)
	}
	if m, _, _ := search("q=" + url.QueryEscape(`re:^line [2-4]$`)); len(m) != 3 {
		t.Errorf("regexp: %v", m)
	}
	if m, sum, _ := search("q=line&limit=4"); len(m) != 4 || sum["truncated"] != true {
		t.Errorf("limit: %d %v", len(m), sum)
	}
	for _, bad := range []string{"q=" + url.QueryEscape("re:("), "q=", "q=x&limit=0", "q=%C3", "q=%C3&case=1", "q=re:%C3",
		"q=" + url.QueryEscape("re:(?:(?:.?){100}){10}Q")} {
		if _, _, code := search(bad); code != 400 {
			t.Errorf("%s: %d", bad, code)
		}
	}
}

func TestLogCutIsVisibleInAPIAndRawLog(t *testing.T) {
	s := startServer(t, `
jobs:
  loud:
    max_log_size: 1KiB
    run: "i=0; while [ $i -lt 500 ]; do echo \"line $i\"; i=$((i+1)); done"
`)
	run := s.waitRun(s.trigger("loud", nil).ID, isFinished)
	if !run.Log.Cut || run.State != "succeeded" {
		t.Errorf("run: cut %v state %s", run.Log.Cut, run.State)
	}
	_, _, raw := s.do("GET", fmt.Sprintf("/api/runs/%d/log", run.ID), "")
	if !strings.HasSuffix(string(raw), "[shiplog: the log was cut here at max_log_size; the rest of the output was discarded]\n") {
		t.Errorf("raw log ends %q", raw[max(0, len(raw)-100):])
	}
}

// Over HTTP/1.1 an event stream owns its connection: it still sends the
// stream's headers, and a viewer that hangs up leaves no goroutine, stream
// slot or buffer behind, whether it leaves at once or after reading.
func TestEventStreamConnectionsLeaveNothingBehind(t *testing.T) {
	s := startServer(t, eventsConfig)
	run := s.trigger("printer", nil)
	s.waitRun(run.ID, isWaiting)
	path := fmt.Sprintf("/api/runs/%d/events", run.ID)
	addr := strings.TrimPrefix(s.URL, "http://")

	open := func() (net.Conn, *bufio.Reader, string) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr)
		r := bufio.NewReader(c)
		var head strings.Builder
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read head: %v (%q)", err, head.String())
			}
			head.WriteString(l)
			if l == "\r\n" {
				return c, r, head.String()
			}
		}
	}
	// A first stream warms up what lives for the whole run: its follower.
	c, r, head := open()
	for _, want := range []string{"HTTP/1.1 200 OK\r\n", "Content-Type: text/event-stream; charset=utf-8\r\n", "Cache-Control: no-cache, no-transform\r\n",
		"X-Accel-Buffering: no\r\n", "Content-Encoding: identity\r\n", "Connection: close\r\n", "Transfer-Encoding: chunked\r\n"} {
		if !strings.Contains(head, want) {
			t.Errorf("head lacks %q:\n%s", want, head)
		}
	}
	// The first chunk is the retry hint alone: small, so a compressing
	// proxy passes it on at once.
	if l, _ := r.ReadString('\n'); l != "d\r\n" {
		t.Errorf("first chunk header %q, want the 13 bytes of the retry hint", l)
	}
	if l, _ := r.ReadString('\n'); l != "retry: 2000\n" {
		t.Errorf("first line of the body %q", l)
	}
	c.Close()
	streams := func() string {
		_, _, body := s.do("GET", "/metrics", "")
		for _, l := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(l, "shiplog_active_streams "); ok {
				return v
			}
		}
		return "?"
	}
	waitFor(t, "the first stream to end", func() bool { return streams() == "0" }, deadline)
	before := runtime.NumGoroutine()

	for i := range 200 {
		c, raw, _ := open()
		r := bufio.NewReader(httputil.NewChunkedReader(raw))
		if i%2 == 0 { // read into the stream first: retry, window, status
			for ev := 0; ev < 3; {
				l, err := r.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if l == "\n" {
					ev++
				}
			}
		}
		c.Close()
	}
	// Sooner than the first heartbeat (15s): the hang-up itself is noticed,
	// not a failed write.
	waitFor(t, "every stream to end", func() bool { return streams() == "0" }, 10*time.Second)
	waitFor(t, "the goroutines to go", func() bool { return runtime.NumGoroutine() <= before }, 10*time.Second)
	s.release(run.ID)
	s.waitRun(run.ID, isFinished)
}

// waitFor polls cond until it holds, failing the test after within.
func waitFor(t *testing.T, what string, cond func() bool, within time.Duration) {
	t.Helper()
	for end := time.Now().Add(within); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("waited %v for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}

// A viewer that stops reading holds up neither the job nor another viewer;
// when it reads again it gets every line once, in order, and the end.
func TestStuckViewerHoldsUpNobodyAndCatchesUp(t *testing.T) {
	const n = 100000 // about 9 MB: far more than the stuck viewer's socket holds
	s := startServer(t, `
jobs:
  flood:
    env: {GATE: $$GATE}
    run: |
      while [ ! -e "$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done
      # 200 bursts with pauses between: far more live batches than a
      # viewer's buffer holds, so the stuck one is cut off.
      awk 'BEGIN { for (i = 1; i <= `+strconv.Itoa(n)+`; i++) { printf "line %d the quick brown fox jumps over the lazy dog, again and again\n", i; if (i % 500 == 0) { fflush(); system("sleep 0.005") } } }'
`)
	run := s.trigger("flood", nil)
	path := fmt.Sprintf("/api/runs/%d/events", run.ID)
	addr := strings.TrimPrefix(s.URL, "http://")
	// A small receive buffer, so the server's writes block early.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr)
	stuck := bufio.NewReader(c)
	if l, err := stuck.ReadString('\n'); err != nil || !strings.HasPrefix(l, "HTTP/1.1 200") {
		t.Fatalf("stuck viewer: %q %v", l, err)
	}
	// The stuck viewer is subscribed; it reads nothing more for now.
	s.release(run.ID)
	other := s.events(path, 0)
	if !other.ended || len(other.lines) != n {
		t.Fatalf("the other viewer got %d lines, ended %v", len(other.lines), other.ended)
	}
	s.waitRun(run.ID, isFinished)
	if cut := s.metric("shiplog_stream_cutoffs_total"); cut == "0" || cut == "?" {
		t.Fatalf("the stuck viewer was never cut off (cutoffs %s): this test would prove nothing", cut)
	}

	// Now it reads.
	for { // the rest of the head
		l, err := stuck.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	body := httputil.NewChunkedReader(stuck)
	dec := sse.NewDecoder(body)
	want := 1
	for {
		ev, err := dec.Next()
		if err != nil {
			t.Fatalf("after line %d: %v", want-1, err)
		}
		if ev.Name == "end" {
			break
		}
		if ev.Name != "log" {
			continue
		}
		for _, l := range ev.Lines() {
			if k, _ := strconv.Atoi(strings.Fields(l)[1]); k != want {
				t.Fatalf("got line %d, want %d", k, want)
			}
			want++
		}
	}
	if want != n+1 {
		t.Fatalf("the stuck viewer got %d lines, want %d", want-1, n)
	}
	// After end the body closes with its last chunk: a clean end, which a
	// client tells from a cut connection.
	if rest, err := io.ReadAll(body); err != nil || len(rest) != 0 {
		t.Errorf("after end: %q, %v; want the chunked body to end cleanly", rest, err)
	}
}

// metric reads one value from /metrics ("?" if absent).
func (s *testServer) metric(name string) string {
	s.t.Helper()
	_, _, body := s.do("GET", "/metrics", "")
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return "?"
}

// A search costs CPU: a client gets two at a time, each stops soon after
// its client leaves, and none runs past its budget.
func TestSearchesAreBoundedPerClientInTimeAndOnLeaving(t *testing.T) {
	s := startServer(t, `
jobs:
  wide:
    run: |
      s=$(head -c 30000 /dev/zero | tr '\0' a)
      i=0; while [ $i -lt 300 ]; do echo "$s"; i=$((i+1)); done
`, func(c *Config) { c.SearchBudget = 4 * time.Second })
	run := s.trigger("wide", nil)
	s.waitRun(run.ID, isFinished)
	// About 20 ms a line here: seconds for the whole log.
	path := fmt.Sprintf("/api/runs/%d/search?q=%s", run.ID, url.QueryEscape("re:(?:.?){50}Q"))

	var cancels []context.CancelFunc
	done := make(chan struct{}, 2)
	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+path, nil)
		go func() {
			defer func() { done <- struct{}{} }()
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	waitFor(t, "two searches to run", func() bool { return s.metric("shiplog_active_searches") == "2" }, deadline)
	if code, _, body := s.do("GET", path, ""); code != http.StatusTooManyRequests {
		t.Errorf("a third search from the same client: %d %s", code, body)
	}
	for _, c := range cancels {
		c()
	}
	<-done
	<-done
	// Each stops at its next line, not at the end of the log nor at its
	// budget (more than 2 s away still, under the race detector on a
	// loaded machine too).
	waitFor(t, "the searches to stop once their client left", func() bool { return s.metric("shiplog_active_searches") == "0" }, 2*time.Second)

	// One left to run ends at its budget with what it found, marked so.
	code, _, body := s.do("GET", path, "")
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	var sum map[string]any
	if code != 200 || json.Unmarshal([]byte(lines[len(lines)-1]), &sum) != nil || sum["timed_out"] != true || sum["done"] != true {
		t.Errorf("search past its budget: %d %s", code, body)
	}
}

// What clients and proxies need of the wire: a finished stream tells a
// resuming client to stop (204), an empty suffix range is unsatisfiable, and
// a running run's JSON leaves out the growing log size, given in headers.
func TestWireDetailsForClientsAndProxies(t *testing.T) {
	s := startServer(t, eventsConfig)
	run := s.trigger("printer", map[string]string{"N": "3"})
	s.waitRun(run.ID, isWaiting)
	code, hdr, body := s.do("GET", fmt.Sprintf("/api/runs/%d", run.ID), "")
	if code != 200 || strings.Contains(string(body), `"log":{`) || hdr.Get("X-Log-Lines") != "1" || hdr.Get("X-Log-Bytes") != "22" {
		t.Errorf("running: %d log headers %q %q, body %s", code, hdr.Get("X-Log-Bytes"), hdr.Get("X-Log-Lines"), body)
	}
	code, hdr2, _ := s.do("GET", fmt.Sprintf("/api/runs/%d", run.ID), "", "If-None-Match", hdr.Get("ETag"))
	if code != http.StatusNotModified || hdr2.Get("X-Log-Lines") != "1" {
		t.Errorf("running, unchanged: %d lines %q", code, hdr2.Get("X-Log-Lines"))
	}
	s.release(run.ID)
	done := s.waitRun(run.ID, isFinished)
	if done.Log == nil || done.Log.Lines != 7 {
		t.Fatalf("finished: log %+v", done.Log)
	}
	size := len(s.logFile(run.ID))
	path := fmt.Sprintf("/api/runs/%d/events", run.ID)
	for _, hdr := range [][]string{{"Last-Event-ID", strconv.Itoa(size)}} {
		if code, _, body := s.do("GET", path, "", hdr...); code != http.StatusNoContent || len(body) != 0 {
			t.Errorf("resume at the end of a finished run: %d %q", code, body)
		}
	}
	if code, _, _ := s.do("GET", path+"?after="+strconv.Itoa(size), ""); code != http.StatusNoContent {
		t.Errorf("after= the end of a finished run: %d", code)
	}
	if res := s.events(path, 0, "Last-Event-ID", "0"); !res.ended || len(res.lines) != 7 {
		t.Errorf("resume from the start still streams: %d lines", len(res.lines))
	}
	code, hdr, body = s.do("GET", fmt.Sprintf("/api/runs/%d/log", run.ID), "", "Range", "bytes=-0")
	if code != http.StatusRequestedRangeNotSatisfiable || hdr.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
		t.Errorf("Range bytes=-0: %d %q %q", code, hdr.Get("Content-Range"), body)
	}
	if code, _, body := s.do("GET", fmt.Sprintf("/api/runs/%d/log", run.ID), "", "Range", "bytes=-3"); code != http.StatusPartialContent || len(body) != 3 {
		t.Errorf("Range bytes=-3: %d %q", code, body)
	}
}

// Waiting viewers lend their sockets to the log's follower, which writes
// live lines to them directly (see streams.Hub). Anything between the
// server and the socket that hides it (a listener wrapper did once) turns
// that off silently: every line then wakes every viewer's goroutine.
func TestLiveLinesAreWrittenStraightToWaitingViewers(t *testing.T) {
	s := startServer(t, `
jobs:
  slow:
    env: {GATE: $$GATE}
    run: |
      while [ ! -e "$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done
      i=0; while [ $i -lt 30 ]; do i=$((i+1)); echo "line $i"; sleep 0.02; done
`)
	run := s.trigger("slow", nil)
	path := fmt.Sprintf("/api/runs/%d/events", run.ID)
	results := make(chan sseResult, 3)
	for range 3 {
		go func() { results <- s.inBackground().events(path, 0) }()
	}
	waitFor(t, "the viewers to connect", func() bool { return s.metric("shiplog_active_streams") == "3" }, deadline)
	s.release(run.ID)
	for range 3 {
		if res := <-results; len(res.lines) != 30 || !res.ended {
			t.Fatalf("a viewer got %d lines", len(res.lines))
		}
	}
	if n := s.metric("shiplog_stream_direct_writes_total"); n == "0" || n == "?" {
		t.Errorf("no live line was written straight to a waiting viewer (direct writes %s)", n)
	}
}

// A job's unfinished line (a prompt, a progress bar redrawn with \r)
// reaches a viewer who asks for it (?partial=1) before its newline, masked,
// without moving the viewer's offset; a viewer who does not ask never sees
// it; the finished line then arrives as usual.
func TestUnfinishedLineReachesViewersBeforeItsNewline(t *testing.T) {
	s := startServer(t, `
jobs:
  prompt:
    env: {GATE: $$GATE}
    run: |
      echo "::add-mask::s3cr3t-value"
      printf 'start\nPassword for s3cr3t-value: '
      while [ ! -e "$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done
      printf 'ok\n10%%\r'
      sleep 0.1
      printf '55%%\r'
      while [ ! -e "$GATE/release2-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done
      printf '100%%\n'
`)
	run := s.trigger("prompt", nil)
	path := fmt.Sprintf("/api/runs/%d/events", run.ID)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	resp := s.send(ctx, "GET", path+"?partial=1", nil)
	defer resp.Body.Close()
	dec := sse.NewDecoder(resp.Body)
	// until reads events up to one that cond accepts.
	until := func(what string, cond func(sse.Event) bool) sse.Event {
		t.Helper()
		for {
			ev, err := dec.Next()
			if err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			if cond(ev) {
				return ev
			}
		}
	}
	partial := func(text string) func(sse.Event) bool {
		return func(ev sse.Event) bool {
			return ev.Name == "partial" && len(ev.Lines()) == 1 && ev.Lines()[0] == text
		}
	}
	var first []string
	var firstID string
	for len(first) < 2 {
		ev := until("the first lines", func(ev sse.Event) bool { return ev.Name == "log" })
		first, firstID = append(first, ev.Lines()...), ev.ID
	}
	if len(first) != 2 || first[1] != "start" || firstID != "22" {
		t.Fatalf("first lines %q to %s", first, firstID)
	}
	p := until("the prompt", partial("Password for ***: "))
	if p.ID != "" {
		t.Fatalf("a partial event has id %q: it would move the viewer's offset", p.ID)
	}
	// A second viewer, resuming where the first one is, gets the prompt too.
	res2 := s.send(ctx, "GET", path+"?partial=1", nil, "Last-Event-ID", "22")
	defer res2.Body.Close()
	dec2 := sse.NewDecoder(res2.Body)
	for {
		ev, err := dec2.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Name == "log" {
			t.Fatalf("resumed at 22, got lines %q", ev.Lines())
		}
		if partial("Password for ***: ")(ev) {
			break
		}
	}
	s.release(run.ID)
	ok := until("the finished prompt line", func(ev sse.Event) bool { return ev.Name == "log" })
	if got := ok.Lines(); len(got) != 1 || got[0] != "Password for ***: ok" {
		t.Fatalf("got %q, want the finished line", got)
	}
	until("the progress bar", partial("10%\r55%\r"))
	if err := os.WriteFile(filepath.Join(s.Gate, fmt.Sprintf("release2-%d", run.ID)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	last := until("the bar's line", func(ev sse.Event) bool { return ev.Name == "log" })
	if got := last.Lines(); len(got) != 1 || got[0] != "10%\r55%\r100%" {
		t.Fatalf("got %q", got)
	}
	until("the end", func(ev sse.Event) bool { return ev.Name == "end" })

	// Without ?partial=1 the same stream has no partial events.
	res := s.events(path, 0)
	for _, ev := range res.events {
		if ev.Name == "partial" {
			t.Fatalf("a viewer that did not ask got %+v", ev)
		}
	}
	if code, _, body := s.do("GET", path+"?partial=yes", ""); code != http.StatusBadRequest {
		t.Errorf("?partial=yes: %d %s", code, body)
	}
}
