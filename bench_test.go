package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/shiplog/shiplog/sse"
)

// The load benchmark: `task bench` (go test -run '^$' -bench Load -benchtime 1x .).
// It builds and starts the real binary, runs jobs through it, connects SSE
// viewers over loopback, and prints each figure beside a baseline measured in
// the same run.

// printLines is the job the benchmark runs (this test binary re-executed):
// it prints count lines at rate per second (0: as fast as it can), each
// starting with the time it was printed, in Unix nanoseconds.
func printLines(rate, count int) {
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	defer w.Flush()
	var tick *time.Ticker
	if rate > 0 {
		tick = time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
	}
	for i := range count {
		if tick != nil {
			<-tick.C
		}
		fmt.Fprintf(w, "%d line %d of %d: the quick brown fox jumps over the lazy dog\n", time.Now().UnixNano(), i+1, count)
		if tick != nil {
			w.Flush()
		}
	}
}

func init() {
	// A job of the benchmark, not a test run.
	if v := os.Getenv("SHIPLOG_BENCH_PRINT"); v != "" {
		var rate, count int
		fmt.Sscanf(v, "%d,%d", &rate, &count)
		printLines(rate, count)
		os.Exit(0)
	}
}

type benchServer struct {
	url  string
	cmd  *exec.Cmd
	data string
}

func startBinary(b *testing.B, args ...string) *benchServer {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "shiplog")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	self, _ := os.Executable()
	gate := filepath.Join(dir, "gate")
	os.Mkdir(gate, 0o755)
	cfg := fmt.Sprintf(`
max_concurrent_runs: 8
jobs:
  print:
    params: [{name: SPEC}, {name: GATED}]
    env: {GATE: %[2]s}
    run: |
      if [ -n "$GATED" ]; then while [ ! -e "$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done; fi
      SHIPLOG_BENCH_PRINT="$SPEC" %[1]q
  idle:
    env: {GATE: %[2]s}
    run: |
      while [ ! -e "$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.05; done
`, self, gate)
	cfgPath := filepath.Join(dir, "shiplog.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	addr := freeAddr(b)
	cmd := exec.Command(bin, append([]string{"--addr", addr, "--config", cfgPath, "--data", filepath.Join(dir, "data"), "--log-level", "warn", "--max-streams-per-client", "0", "--max-triggers-per-minute", "0"}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	s := &benchServer{url: "http://" + addr, cmd: cmd, data: filepath.Join(dir, "data")}
	for start := time.Now(); ; {
		if resp, err := http.Get(s.url + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(start) > 10*time.Second {
			b.Fatal("server did not start")
		}
		time.Sleep(20 * time.Millisecond) // polling for the process to listen
	}
	return s
}

func (s *benchServer) trigger(b *testing.B, job string, params map[string]string) int64 {
	body, _ := json.Marshal(map[string]any{"params": params})
	resp, err := http.Post(s.url+"/api/jobs/"+job+"/runs", "application/json", strings.NewReader(string(body)))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var run struct{ ID int64 }
	if err := json.NewDecoder(resp.Body).Decode(&run); err != nil || run.ID == 0 {
		b.Fatalf("trigger: %v %d", err, resp.StatusCode)
	}
	return run.ID
}

func (s *benchServer) wait(b *testing.B, id int64) {
	etag := ""
	for {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/runs/%d?wait=30s", s.url, id), nil)
		req.Header.Set("If-None-Match", etag)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			etag = resp.Header.Get("ETag")
		}
		if st := resp.Header.Get("X-Run-State"); st != "" && st != "queued" && st != "running" {
			return
		}
		_ = data
	}
}

func (s *benchServer) rss(b *testing.B) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpu is the CPU time the server process has used.
func (s *benchServer) cpu(b *testing.B) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th, in clock ticks (100 per second here).
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// selfCPU is the CPU time this process (the viewers) has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (s *benchServer) release(id int64) {
	os.WriteFile(filepath.Join(filepath.Dir(s.data), "gate", fmt.Sprintf("release-%d", id)), nil, 0o644)
}

// viewer reads one run's events; onLine sees each line.
func viewer(ctx context.Context, url string, onLine func(string), connected ...*sync.WaitGroup) (lines int, err error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	for _, wg := range connected {
		wg.Done()
	}
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	dec := sse.NewDecoder(resp.Body)
	for {
		ev, err := dec.Next()
		if err != nil {
			return lines, err
		}
		switch ev.Name {
		case "log":
			for _, d := range ev.Data {
				if onLine != nil {
					onLine(d)
				}
				lines++
			}
		case "end":
			return lines, nil
		}
	}
}

// subscribeLatencies opens k event streams of a quiet run one after another
// and times each from the request to its first status event (sent once the
// stream has subscribed to the run's follower).
func subscribeLatencies(b *testing.B, base, path string, k int) []time.Duration {
	var out []time.Duration
	addr := strings.TrimPrefix(base, "http://")
	for range k {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return out
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr)
		r := bufio.NewReader(c)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				b.Error(err)
				break
			}
			if l == "event: status\n" {
				out = append(out, time.Since(start))
				break
			}
		}
		c.Close()
	}
	return out
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// loopbackConn runs serve on the server side of a fresh loopback connection
// (closing it after) and returns the client side. It may run on any
// goroutine: it reports a failure with b.Error and returns nil.
func loopbackConn(b *testing.B, serve func(net.Conn)) net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Error(err)
		return nil
	}
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Error(err)
		return nil
	}
	return c
}

// countLines reads r to its end and counts its lines.
func countLines(r io.Reader) int {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
	}
	return n
}

// sendFile writes the file at path to c.
func sendFile(path string) func(net.Conn) {
	return func(c net.Conn) {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		io.Copy(c, f)
	}
}

// baselineFanout is the plain way to send a line to n viewers: a loop that
// writes each line, as one event, to n loopback sockets in turn, at 200 lines
// a second, read by the same epoll viewers as the server's streams. It
// returns the latency of every line at every viewer.
func baselineFanout(b *testing.B, n, count int) (p50, p99 time.Duration) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, n)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				r := bufio.NewReader(c)
				for {
					if l, err := r.ReadString('\n'); err != nil || l == "\r\n" {
						break
					}
				}
				c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
				accepted <- c
			}()
		}
	}()
	views := dialViewers(b, ln.Addr().String(), "/", n)
	defer views.close()
	conns := make([]net.Conn, 0, n)
	for range n {
		conns = append(conns, <-accepted)
	}
	go func() {
		tick := time.NewTicker(time.Second / 200)
		defer tick.Stop()
		var ev []byte
		for i := range count {
			<-tick.C
			ev = fmt.Appendf(ev[:0], "event: log\nid: %d\ndata: %d line %d of %d: the quick brown fox jumps over the lazy dog\n\n", i*100, time.Now().UnixNano(), i+1, count)
			for _, c := range conns {
				c.Write(ev)
			}
		}
		for _, c := range conns {
			c.Write([]byte("event: end\ndata: {}\n\n"))
			c.Close()
		}
	}()
	lat := views.latencies()
	if len(lat) != n*count {
		b.Fatalf("bare fan-out: %d viewers got %d lines, want %d", n, len(lat), n*count)
	}
	return percentile(lat, .5), percentile(lat, .99)
}

// streamViewer reads one event stream over a plain socket, as the
// baseline's readers read theirs, and counts the lines of its log events.
func streamViewer(addr, path string, connected *sync.WaitGroup) (int, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		connected.Done()
		return 0, err
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, addr)
	r := bufio.NewReaderSize(c, 256<<10)
	head := true
	var sse sseLines
	n := 0
	for {
		l, err := r.ReadSlice('\n')
		if err != nil {
			if head {
				connected.Done()
			}
			return n, fmt.Errorf("viewer: %w", err)
		}
		if head {
			if len(l) <= 2 { // the blank line after the headers
				head = false
				connected.Done()
			}
			continue
		}
		data, end := sse.next(l[:len(l)-1])
		if end {
			return n, nil
		}
		if data != nil {
			n++
		}
	}
}

// baselineLive is the plain way to ship a live log: the same job writes its
// lines to a file, and n readers each follow the file (read to its end, look
// again shortly; no framing) and write what they read to a loopback socket,
// read on the other side. It returns the lines per second each reader got,
// from the job's start to the last line read.
func baselineLive(b *testing.B, spec string, n int) float64 {
	path := filepath.Join(b.TempDir(), "live.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	self, _ := os.Executable()
	job := exec.Command(self)
	job.Env = append(os.Environ(), "SHIPLOG_BENCH_PRINT="+spec)
	job.Stdout = f
	var exited atomic.Bool
	var wg sync.WaitGroup
	var total atomic.Int64
	start := time.Now()
	if err := job.Start(); err != nil {
		b.Fatal(err)
	}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := loopbackConn(b, func(c net.Conn) {
				r, err := os.Open(path)
				if err != nil {
					return
				}
				defer r.Close()
				buf := make([]byte, 64<<10)
				for {
					done := exited.Load() // before the read: then EOF is the end
					k, err := r.Read(buf)
					if k > 0 {
						if _, err := c.Write(buf[:k]); err != nil {
							return
						}
					}
					if err == io.EOF {
						if done {
							return
						}
						time.Sleep(50 * time.Microsecond) // the follow interval, as tail -f -s
					} else if err != nil {
						return
					}
				}
			})
			if c == nil {
				return
			}
			defer c.Close()
			total.Add(int64(countLines(c)))
		}()
	}
	job.Wait()
	exited.Store(true)
	f.Close()
	wg.Wait()
	return float64(total.Load()) / float64(n) / time.Since(start).Seconds()
}

// baselineCopies ships the file to n readers at once, each over its own
// loopback socket, and returns the lines per second each reader got.
func baselineCopies(b *testing.B, path string, n int) float64 {
	var wg sync.WaitGroup
	var total atomic.Int64
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			total.Add(int64(copyAndCount(b, path)))
		}()
	}
	wg.Wait()
	return float64(total.Load()) / float64(n) / time.Since(start).Seconds()
}

func copyAndCount(b *testing.B, path string) int {
	c := loopbackConn(b, sendFile(path))
	if c == nil {
		return 0
	}
	defer c.Close()
	return countLines(c)
}

// baselineCopy is the plain way to ship a file: read it and write it to a
// loopback socket, read on the other side.
func baselineCopy(b *testing.B, path string) time.Duration {
	start := time.Now()
	copyAndCount(b, path)
	return time.Since(start)
}

type row struct{ name, value, baseline, ratio string }

func BenchmarkLoad(b *testing.B) {
	if testing.Short() {
		b.Skip("load benchmark")
	}
	b.ReportAllocs()
	s := startBinary(b)
	var table []row
	add := func(r row) {
		table = append(table, r)
		fmt.Printf("%-48s %14s %14s %8s\n", r.name, r.value, r.baseline, r.ratio)
	}
	fmt.Printf("%-48s %14s %14s %8s\n", "figure", "shiplog", "baseline", "ratio")
	// SHIPLOG_BENCH=latency,throughput,… runs only those parts.
	only := os.Getenv("SHIPLOG_BENCH")
	part := func(name string) bool { return only == "" || slices.Contains(strings.Split(only, ","), name) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
	ratio := func(a, b float64) string { return fmt.Sprintf("%.2fx", a/b) }

	// Latency, line printed → line received, at 200 lines/s.
	counts := []int{1, 100, 1000}
	if v := os.Getenv("SHIPLOG_BENCH_VIEWERS"); v != "" {
		counts = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("SHIPLOG_BENCH_VIEWERS: %v", err)
			}
			counts = append(counts, n)
		}
	}
	for _, n := range counts {
		if !part("latency") {
			break
		}
		// The job waits until every viewer is connected, so every line is
		// received live.
		run := s.trigger(b, "print", map[string]string{"SPEC": "200,1000", "GATED": "1"})
		views := dialViewers(b, strings.TrimPrefix(s.url, "http://"), fmt.Sprintf("/api/runs/%d/events", run), n)
		// Subscribing to a quiet run, while this one has n viewers: a
		// follower busy writing to them must not hold up other runs.
		quiet := s.trigger(b, "idle", nil)
		quietPath := fmt.Sprintf("/api/runs/%d/events", quiet)
		idleSub := subscribeLatencies(b, s.url, quietPath, 50) // baseline: before the load
		cpu0, self0, t0 := s.cpu(b), selfCPU(), time.Now()
		s.release(run)
		busySub := make(chan []time.Duration, 1)
		go func() { busySub <- subscribeLatencies(b, s.url, quietPath, 50) }()
		lat := views.latencies()
		views.close()
		sub := <-busySub
		s.release(quiet)
		wall := time.Since(t0)
		if len(lat) != n*1000 {
			b.Fatalf("%d viewers got %d lines, want %d", n, len(lat), n*1000)
		}
		cpu, self := s.cpu(b)-cpu0, selfCPU()-self0
		p50, p99 := percentile(lat, .5), percentile(lat, .99)
		add(row{fmt.Sprintf("  CPU: server, viewers (%% of one core), %d viewers", n), fmt.Sprintf("%.0f%%", 100*cpu.Seconds()/wall.Seconds()), fmt.Sprintf("%.0f%%", 100*self.Seconds()/wall.Seconds()), "-"})
		bp50, bp99 := baselineFanout(b, n, 1000)
		add(row{fmt.Sprintf("latency p50, %d viewers, 200 lines/s", n), ms(p50), ms(bp50), ratio(float64(p50), float64(bp50))})
		add(row{fmt.Sprintf("latency p99, %d viewers, 200 lines/s", n), ms(p99), ms(bp99), ratio(float64(p99), float64(bp99))})
		sp99, ip99 := percentile(sub, .99), percentile(idleSub, .99)
		add(row{fmt.Sprintf("  subscribe to a quiet run p99, beside %d viewers", n), ms(sp99), ms(ip99), ratio(float64(sp99), float64(ip99))})
	}

	// Throughput: 1,000,000 lines as fast as the job prints, 10 viewers.
	if part("throughput") {
		run := s.trigger(b, "print", map[string]string{"SPEC": "0,1000000", "GATED": "1"})
		// A goroutine per viewer here, as the baseline has one per reader:
		// one thread could not read ten fast streams.
		var wg, connected sync.WaitGroup
		var sum atomic.Int64
		for range 10 {
			wg.Add(1)
			connected.Add(1)
			go func() {
				defer wg.Done()
				n, err := streamViewer(strings.TrimPrefix(s.url, "http://"), fmt.Sprintf("/api/runs/%d/events", run), &connected)
				if err != nil {
					b.Error(err)
				}
				sum.Add(int64(n))
			}()
		}
		connected.Wait()
		cpu0, self0, start := s.cpu(b), selfCPU(), time.Now()
		s.release(run)
		wg.Wait()
		total := sum.Load()
		elapsed := time.Since(start)
		cpu, self := s.cpu(b)-cpu0, selfCPU()-self0
		add(row{"  CPU: server, viewers (% of one core)", fmt.Sprintf("%.0f%%", 100*cpu.Seconds()/elapsed.Seconds()), fmt.Sprintf("%.0f%%", 100*self.Seconds()/elapsed.Seconds()), "-"})
		if total != 10*1e6 {
			b.Fatalf("viewers got %d lines, want 10,000,000", total)
		}
		perViewer := float64(total) / 10 / elapsed.Seconds()
		liveRate := baselineLive(b, "0,1000000", 10)
		add(row{"lines/s to each of 10 viewers, 1M-line job", fmt.Sprintf("%.0f", perViewer), fmt.Sprintf("%.0f", liveRate), ratio(liveRate, perViewer) + " slower"})
		baseRate := baselineCopies(b, filepath.Join(s.data, "logs", fmt.Sprintf("%d.log", run)), 10)
		add(row{"  the same, baseline: the finished file copied", fmt.Sprintf("%.0f", perViewer), fmt.Sprintf("%.0f", baseRate), ratio(baseRate, perViewer) + " slower"})
		// The same job with nobody watching: no viewer can finish before the
		// job has printed its last line.
		alone := s.trigger(b, "print", map[string]string{"SPEC": "0,1000000"})
		s.wait(b, alone)
		r, err := http.Get(fmt.Sprintf("%s/api/runs/%d", s.url, alone))
		if err != nil {
			b.Fatal(err)
		}
		var rec struct {
			DurationMS int64 `json:"duration_ms"`
		}
		json.NewDecoder(r.Body).Decode(&rec)
		r.Body.Close()
		jobAlone := time.Duration(rec.DurationMS) * time.Millisecond
		add(row{"  job start to last line at 10 viewers vs job alone", ms(elapsed), ms(jobAlone), ratio(float64(elapsed), float64(jobAlone))})
	}

	// A 50 MB finished log to one viewer.
	if part("finished") {
		run := s.trigger(b, "print", map[string]string{"SPEC": "0,640000"})
		s.wait(b, run)
		path := filepath.Join(s.data, "logs", fmt.Sprintf("%d.log", run))
		st, _ := os.Stat(path)
		start := time.Now()
		viewer(context.Background(), fmt.Sprintf("%s/api/runs/%d/events", s.url, run), nil)
		d := time.Since(start)
		base := baselineCopy(b, path)
		add(row{fmt.Sprintf("deliver a finished %d MB log to one viewer", st.Size()>>20), ms(d), ms(base), ratio(float64(d), float64(base))})
	}

	// Across replicas: a job on the node that embeds the engine, viewers on
	// a replica that copies its log from the engine, against viewers of the
	// same run on the node itself, at 1,000 lines/s.
	if part("replica") {
		engineAddr := freeAddr(b)
		token := filepath.Join(b.TempDir(), "token")
		if err := os.WriteFile(token, []byte("bench-token"), 0o600); err != nil {
			b.Fatal(err)
		}
		node := startBinary(b, "--nats-listen", engineAddr, "--nats-token-file", token)
		replica := startBinary(b, "--nats", "nats://"+engineAddr, "--nats-token-file", token)
		for _, n := range []int{1, 100} {
			run := node.trigger(b, "print", map[string]string{"SPEC": "1000,2000", "GATED": "1"})
			path := fmt.Sprintf("/api/runs/%d/events", run)
			local := dialViewers(b, strings.TrimPrefix(node.url, "http://"), path, n)
			remote := dialViewers(b, strings.TrimPrefix(replica.url, "http://"), path, n)
			node.release(run)
			localLat := make(chan []time.Duration, 1)
			go func() { localLat <- local.latencies() }()
			rl := remote.latencies()
			ll := <-localLat
			local.close()
			remote.close()
			if len(rl) != n*2000 || len(ll) != n*2000 {
				b.Fatalf("%d viewers on each: %d lines on the replica, %d on the node, want %d", n, len(rl), len(ll), n*2000)
			}
			for _, p := range []float64{.5, .99} {
				rp, lp := percentile(rl, p), percentile(ll, p)
				add(row{fmt.Sprintf("replica latency p%.0f, %d viewers, 1000 lines/s", p*100, n), ms(rp), ms(lp), ratio(float64(rp), float64(lp))})
			}
		}
	}

	// Memory per idle viewer, 2,000 connected to a running job, on a server
	// of its own: what earlier parts left on the heap would blur the figure.
	if part("memory") {
		s := startBinary(b)
		run := s.trigger(b, "idle", nil)
		time.Sleep(200 * time.Millisecond) // let the run start; not synchronisation of a result
		before := s.rss(b)
		ctx, cancel := context.WithCancel(context.Background())
		var connected sync.WaitGroup
		for range 2000 {
			connected.Add(1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/runs/%d/events", s.url, run), nil)
				resp, err := http.DefaultClient.Do(req)
				connected.Done()
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}()
		}
		connected.Wait()
		time.Sleep(time.Second) // let the server settle its buffers; a measurement, not synchronisation
		after := s.rss(b)
		per := float64(after-before) / 2000
		add(row{"resident memory per idle viewer (2,000)", fmt.Sprintf("%.1f KiB", per/1024), "-", "-"})
		cancel()
		s.release(run)
	}

	// A 1 GB log: memory stays flat while it is served whole, paged by range,
	// opened at its tail and searched.
	if part("gigabyte") {
		run := s.trigger(b, "print", map[string]string{"SPEC": "0,12700000"})
		s.wait(b, run)
		path := filepath.Join(s.data, "logs", fmt.Sprintf("%d.log", run))
		st, _ := os.Stat(path)
		base := fmt.Sprintf("%s/api/runs/%d", s.url, run)
		drain := func(req *http.Request) {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		get := func(u string) { req, _ := http.NewRequest("GET", u, nil); drain(req) }
		get(base + "/log?line=1") // warm
		before := s.rss(b)
		start := time.Now()
		get(base + "/log")
		whole := time.Since(start)
		for i := range 100 {
			req, _ := http.NewRequest("GET", base+"/log", nil)
			off := st.Size() / 100 * int64(i)
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+512<<10))
			drain(req)
		}
		for _, line := range []int{1, 100, 6000000, 12600000} {
			get(fmt.Sprintf("%s/log?line=%d", base, line))
		}
		start = time.Now()
		get(base + "/search?q=line+123+of+12700000")
		search := time.Since(start)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events?tail=5000", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		cancel()
		after := s.rss(b)
		mb := func(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }
		add(row{fmt.Sprintf("resident memory after serving a %d MB log (baseline: before)", st.Size()>>20), mb(after), mb(before), ratio(float64(after), float64(before))})
		add(row{"  download it whole", ms(whole), "-", "-"})
		add(row{"  search all of it (case-insensitive)", ms(search), "-", "-"})
	}

	// Status polling: requests per second answered 200 and 304, against
	// /healthz as the baseline.
	if part("status") {
		run := s.trigger(b, "print", map[string]string{"SPEC": "0,10"})
		s.wait(b, run)
		resp, _ := http.Get(fmt.Sprintf("%s/api/runs/%d", s.url, run))
		etag := resp.Header.Get("ETag")
		resp.Body.Close()
		rate := func(path, inm string) float64 {
			var n atomic.Int64
			deadline := time.Now().Add(2 * time.Second)
			var wg sync.WaitGroup
			tr := &http.Transport{MaxIdleConnsPerHost: 16}
			c := &http.Client{Transport: tr}
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(deadline) {
						req, _ := http.NewRequest("GET", s.url+path, nil)
						if inm != "" {
							req.Header.Set("If-None-Match", inm)
						}
						resp, err := c.Do(req)
						if err != nil {
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						n.Add(1)
					}
				}()
			}
			wg.Wait()
			tr.CloseIdleConnections()
			return float64(n.Load()) / 2
		}
		health := rate("/healthz", "")
		ok := rate(fmt.Sprintf("/api/runs/%d", run), "")
		notMod := rate(fmt.Sprintf("/api/runs/%d", run), etag)
		add(row{"GET /api/runs/{id} answered 200, req/s", fmt.Sprintf("%.0f", ok), fmt.Sprintf("%.0f", health), ratio(ok, health)})
		add(row{"GET /api/runs/{id} answered 304, req/s", fmt.Sprintf("%.0f", notMod), fmt.Sprintf("%.0f", health), ratio(notMod, health)})
	}
	_ = table
}
