package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/engine"
	"github.com/shiplog/shiplog/sse"
)

const replicaJobs = `
jobs:
  count:
    run: |
      seq 1 20000
      echo "::progress::50 half"
      while [ ! -e "$$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.02; done
      seq 20001 40000
  wide:
    run: |
      head -c 4194304 /dev/zero | tr '\0' y; echo
      seq 1 100000
  quick:
    run: echo "$SHIPLOG_RUN_ID"
  gated:
    run: |
      shiplog gate "Ship it?" --timeout 1m
      echo "gate said $?"
  prompt:
    run: |
      printf 'start\nPassword: '
      while [ ! -e "$$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.02; done
      echo ok
` + farJob

// farJob runs only on runners of zone prod.
const farJob = `
  far:
    zone: prod
    lock: far-away
    run: echo "far $SHIPLOG_RUN_ID"
`

// startCluster starts the node that embeds the engine and runs jobs,
// listening for replicas with a token, and n replicas that join it.
func startCluster(t *testing.T, n int) (runner *testServer, replicas []*testServer, join func(*Config)) {
	t.Helper()
	addr := freeAddr(t)
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("s3cret-engine-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runner = startServer(t, replicaJobs, func(c *Config) { c.NATSListen, c.NATSTokenFile = addr, token })
	join = func(c *Config) { c.NATS, c.NATSTokenFile = "nats://"+addr, token }
	for range n {
		replicas = append(replicas, startServer(t, replicaJobs, join))
	}
	return runner, replicas, join
}

// Replicas joined to one engine show the runs the engine's node runs,
// trigger and cancel them, wake long polls at changes made elsewhere, and
// serve each log whole and exact, also to a viewer who moves between them.
func TestReplicasShareOneEngine(t *testing.T) {
	a, rs, join := startCluster(t, 2)
	b, c := rs[0], rs[1]

	// Triggered through B, run by A, seen at once through C.
	run := b.trigger("count", nil)
	if code, _, body := c.do("GET", fmt.Sprintf("/api/runs/%d", run.ID), ""); code != http.StatusOK {
		t.Fatalf("C does not know run #%d: %d %s", run.ID, code, body)
	}
	c.waitRun(run.ID, isHalf)

	// A long poll on C wakes when the run, on A, finishes.
	_, hdr, _ := c.do("GET", fmt.Sprintf("/api/runs/%d", run.ID), "")
	woke := make(chan api.Run, 1)
	go func() {
		code, _, body := c.inBackground().do("GET", fmt.Sprintf("/api/runs/%d?wait=30s", run.ID), "", "If-None-Match", hdr.Get("ETag"))
		var r api.Run
		if code != http.StatusOK || json.Unmarshal(body, &r) != nil {
			t.Errorf("long poll on C: %d %s", code, body)
		}
		woke <- r
	}()

	// A viewer reads half the log from C, then resumes on B, then on A.
	first := c.events(fmt.Sprintf("/api/runs/%d/events", run.ID), 5)
	if len(first.lines) == 0 {
		t.Fatal("no lines from C")
	}
	a.release(run.ID)
	second := b.events(fmt.Sprintf("/api/runs/%d/events", run.ID), 7, "Last-Event-ID", first.lastID)
	third := a.events(fmt.Sprintf("/api/runs/%d/events", run.ID), 0, "Last-Event-ID", second.lastID)
	if !third.ended {
		t.Fatal("the stream from A did not end")
	}
	got := slices.Concat(first.lines, second.lines, third.lines)
	want := make([]string, 0, 40001)
	for i := range 40000 {
		if i == 20000 {
			want = append(want, "::progress::50 half")
		}
		want = append(want, strconv.Itoa(i+1))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%d lines through C (to id %s), B (to id %s) and A, want %d: not each line once and in order",
			len(got), first.lastID, second.lastID, len(want))
	}
	if r := <-woke; r.State != api.Succeeded {
		t.Fatalf("the long poll on C woke with %q", r.State)
	}

	// One record, one ETag, wherever it is asked.
	etags := map[string]bool{}
	for _, s := range []*testServer{a, b, c} {
		r := s.waitRun(run.ID, isFinished)
		if r.State != api.Succeeded {
			t.Fatalf("%s says %s", s.URL, r.State)
		}
		_, h, _ := s.do("GET", fmt.Sprintf("/api/runs/%d", run.ID), "")
		etags[h.Get("ETag")] = true
	}
	if len(etags) != 1 {
		t.Fatalf("ETags differ between replicas: %v", etags)
	}
	for etag := range etags {
		if code, _, _ := b.do("GET", fmt.Sprintf("/api/runs/%d", run.ID), "", "If-None-Match", etag); code != http.StatusNotModified {
			t.Fatalf("B answered A's ETag with %d", code)
		}
	}
	// The copies are the runner's log, byte for byte.
	for _, s := range []*testServer{b, c} {
		if !bytes.Equal(s.logFile(run.ID), a.logFile(run.ID)) {
			t.Fatalf("%s's copy of the log differs from the runner's", s.URL)
		}
	}

	// Cancel through C stops the run on A.
	held := c.trigger("count", nil)
	b.waitRun(held.ID, isHalf)
	if code, _, body := c.do("POST", fmt.Sprintf("/api/runs/%d/cancel", held.ID), ""); code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("cancel through C: %d %s", code, body)
	}
	if r := b.waitRun(held.ID, isFinished); r.State != api.Canceled {
		t.Fatalf("after a cancel through C, B says %s", r.State)
	}
	if code, _, body := b.do("POST", fmt.Sprintf("/api/runs/%d/cancel", held.ID), ""); code != http.StatusConflict {
		t.Fatalf("a second cancel through B: %d %s, want 409 as on A", code, body)
	}
	if code, _, body := b.do("POST", "/api/jobs/count/runs", `{"params":{"NOPE":"1"}}`); code != http.StatusBadRequest {
		t.Fatalf("an invalid parameter through B: %d %s, want 400 as on A", code, body)
	}

	// Triggers through both replicas at once: unique ids, each caller's
	// increasing, every run recorded.
	var (
		mu  sync.Mutex
		ids []int64
		wg  sync.WaitGroup
	)
	for _, s := range []*testServer{b, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := s.inBackground()
			last := int64(0)
			for range 10 {
				r := s.trigger("quick", nil)
				if r.ID <= last {
					t.Errorf("ids from %s went %d then %d", s.URL, last, r.ID)
				}
				last = r.ID
				mu.Lock()
				ids = append(ids, r.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(ids)
	if len(slices.Compact(ids)) != 20 {
		t.Fatalf("20 triggers gave ids %v", ids)
	}

	// A replica that joins after all this shows the whole history and
	// serves a finished run's log, ranged and searched, from the engine.
	wide := a.trigger("wide", nil)
	a.waitRun(wide.ID, isFinished)
	d := startServer(t, replicaJobs, join)
	code, _, body := d.do("GET", "/api/runs?limit=100", "")
	var list struct{ Runs []api.Run }
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil {
		t.Fatalf("runs on D: %d %s", code, body)
	}
	if len(list.Runs) != 23 {
		t.Fatalf("D lists %d runs, want 23", len(list.Runs))
	}
	whole := a.logFile(wide.ID)
	if code, _, got := d.do("GET", fmt.Sprintf("/api/runs/%d/log", wide.ID), ""); code != http.StatusOK || !bytes.Equal(got, whole) {
		t.Fatalf("D served the log with %d, %d bytes, want %d", code, len(got), len(whole))
	}
	if code, _, got := d.do("GET", fmt.Sprintf("/api/runs/%d/log", wide.ID), "", "Range", "bytes=4194300-4194320"); code != http.StatusPartialContent || !bytes.Equal(got, whole[4194300:4194321]) {
		t.Fatalf("a range from D: %d %q", code, got)
	}
	if code, _, got := d.do("GET", fmt.Sprintf("/api/runs/%d/search?q=99999", wide.ID), ""); code != http.StatusOK || !bytes.Contains(got, []byte(`"text":"99999"`)) {
		t.Fatalf("a search on D: %d %s", code, got)
	}
	d.waitMetric("shiplog_log_copies 0")
}

func isHalf(r *api.Run) bool { return r.Progress.Percent == 50 }

// A replica whose engine has no runner says so, and a pair of engine flags
// that contradict each other is refused.
func TestReplicaFlags(t *testing.T) {
	if _, err := parseServeFlags([]string{"--nats", "nats://127.0.0.1:4222", "--nats-listen", "127.0.0.1:4222"}, &bytes.Buffer{}); err == nil {
		t.Fatal("--nats with --nats-listen was accepted")
	}
	for _, args := range [][]string{
		{"--nats-listen", "127.0.0.1:4222", "--nats-tls-cert", "c.pem"},
		{"--nats-tls-cert", "c.pem", "--nats-tls-key", "k.pem"},
		{"--lease", "100ms"},
	} {
		if _, err := parseServeFlags(args, io.Discard); err == nil {
			t.Errorf("shiplog serve %q was accepted", args)
		}
	}
	for _, args := range [][]string{{}, {"--nats", "nats://127.0.0.1:4222", "--zone", "none"}, {"--nats", "nats://127.0.0.1:4222", "extra"},
		{"--nats", "nats://127.0.0.1:4222", "--lease", "2h"}} {
		if _, err := parseRunnerFlags(args, io.Discard); err == nil {
			t.Errorf("shiplog runner %q was accepted", args)
		}
	}
	for _, args := range [][]string{{"extra"}, {"--listen", "nope"}} {
		f, err := parseEngineFlags(args, io.Discard)
		if err == nil {
			_, err = engine.StartNode(f.node)
		}
		if err == nil {
			t.Errorf("shiplog engine %q was accepted", args)
		}
	}
	// A node beyond loopback needs a token.
	if _, err := engine.StartNode(engine.NodeConfig{Name: "n1", Dir: t.TempDir(), Listen: "0.0.0.0:0", Cluster: "127.0.0.1:0"}); err == nil {
		t.Error("an engine node listening beyond loopback without a token started")
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "token")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cfg := Config{ConfigPath: "none.yaml", DataDir: dir, NATSListen: "127.0.0.1:0", NATSTokenFile: empty, ShutdownGrace: time.Second}
	if err := serve(ctx, cfg, &bytes.Buffer{}); err == nil {
		t.Fatal("an empty token file was accepted")
	}
}

// With the node that embeds the engine gone, a replica still shows the
// history and the logs it has copied, and says plainly what it cannot do:
// start runs, or serve a log it never copied.
func TestReplicaWithoutItsRunner(t *testing.T) {
	a, rs, _ := startCluster(t, 1)
	b := rs[0]
	seen := b.trigger("quick", nil)
	unseen := b.trigger("quick", nil)
	b.waitRun(seen.ID, isFinished)
	b.waitRun(unseen.ID, isFinished)
	if code, _, body := b.do("GET", fmt.Sprintf("/api/runs/%d/log", seen.ID), ""); code != http.StatusOK || string(body) != fmt.Sprintf("%d\n", seen.ID) {
		t.Fatalf("log of #%d on B: %d %q", seen.ID, code, body)
	}
	a.stop()

	if code, _, body := b.do("GET", fmt.Sprintf("/api/runs/%d", unseen.ID), ""); code != http.StatusOK {
		t.Fatalf("B without the engine: run #%d: %d %s", unseen.ID, code, body)
	}
	if code, _, body := b.do("GET", fmt.Sprintf("/api/runs/%d/log", seen.ID), ""); code != http.StatusOK || string(body) != fmt.Sprintf("%d\n", seen.ID) {
		t.Fatalf("B without the engine: the log it copied: %d %q", code, body)
	}
	for _, tc := range []struct{ method, path, want string }{
		{"GET", fmt.Sprintf("/api/runs/%d/log", unseen.ID), "cannot be reached"},
		{"POST", "/api/jobs/quick/runs", "cannot be reached"},
		{"POST", fmt.Sprintf("/api/runs/%d/rerun", seen.ID), "cannot be reached"},
	} {
		code, hdr, body := b.do(tc.method, tc.path, "{}")
		if code != http.StatusServiceUnavailable || !bytes.Contains(body, []byte(tc.want)) || hdr.Get("Retry-After") == "" {
			t.Errorf("%s %s on B without the engine: %d %s (Retry-After %q), want 503 saying %q", tc.method, tc.path, code, body, hdr.Get("Retry-After"), tc.want)
		}
	}
}

// A job of another zone waits in the queue until a runner of its zone
// joins the engine (shiplog runner, no pages), which runs it; every
// dashboard then serves its log, copied from the engine.
func TestRunnerRunsItsZone(t *testing.T) {
	a, rs, join := startCluster(t, 1)
	b := rs[0]
	var engineCfg Config
	join(&engineCfg)
	far := b.trigger("far", nil)
	if w := b.waitRun(far.ID, func(r *api.Run) bool { return r.Wait != nil }).Wait; w.Position != 1 {
		t.Fatalf("the run of zone prod, with no runner of it yet, waits for %+v", w)
	}
	// Canceled while queued, through another node: its (empty) log ends
	// there, so a viewer who was waiting for it on B sees the end.
	dropped := b.trigger("far", nil)
	viewed := make(chan sseResult, 1)
	go func() { viewed <- b.inBackground().events(fmt.Sprintf("/api/runs/%d/events", dropped.ID), 0) }()
	b.waitMetric("shiplog_log_copies 1")
	if code, _, body := a.do("POST", fmt.Sprintf("/api/runs/%d/cancel", dropped.ID), ""); code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("cancel of a queued run through A: %d %s", code, body)
	}
	if r := b.waitRun(dropped.ID, isFinished); r.State != api.Canceled {
		t.Fatalf("the queued run canceled through A is %s", r.State)
	}
	select {
	case res := <-viewed:
		if !res.ended || len(res.lines) != 0 {
			t.Fatalf("the viewer of the canceled queued run on B: ended %v, %d lines", res.ended, len(res.lines))
		}
	case <-time.After(deadline):
		t.Fatal("the viewer of the canceled queued run on B never saw its end")
	}
	if code, _, body := b.do("GET", fmt.Sprintf("/api/runs/%d/log", dropped.ID), ""); code != http.StatusOK || len(body) != 0 {
		t.Fatalf("log of the canceled queued run through B: %d %q", code, body)
	}

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "shiplog.yaml")
	if err := os.WriteFile(cfgPath, []byte("jobs:"+farJob), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"runner", "--nats", engineCfg.NATS, "--nats-token-file", engineCfg.NATSTokenFile,
			"--zone", "prod", "--config", cfgPath, "--data", filepath.Join(dir, "data")}, io.Discard, &stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shiplog runner: %v\n%s", err, stderr.String())
		}
	}()

	got := b.waitRun(far.ID, isFinished)
	if got.State != api.Succeeded || got.Node == "" {
		t.Fatalf("the run of zone prod: %s on %q", got.State, got.Node)
	}
	if mine := a.waitRun(far.ID, isFinished); mine.Node != got.Node {
		t.Fatalf("A says it ran on %q, B on %q", mine.Node, got.Node)
	}
	for _, s := range []*testServer{a, b} {
		if code, _, body := s.do("GET", fmt.Sprintf("/api/runs/%d/log", far.ID), ""); code != http.StatusOK || string(body) != fmt.Sprintf("far %d\n", far.ID) {
			t.Fatalf("log through %s: %d %q", s.URL, code, body)
		}
	}
	// The page says where it ran.
	_, _, page := b.do("GET", fmt.Sprintf("/runs/%d", far.ID), "", "Accept", "text/html")
	if !bytes.Contains(page, []byte(`data-testid="run-node">`+got.Node+"<")) {
		t.Fatal("the run page does not say which node ran the run")
	}
}

// A replica shows a run's unfinished line (?partial=1) as the node
// running it does: the one shown when its copy starts (asked of the
// runner), and each later one, after the lines it follows.
func TestReplicaShowsTheUnfinishedLine(t *testing.T) {
	a, rs, _ := startCluster(t, 1)
	b := rs[0]
	run := a.trigger("prompt", nil)
	path := fmt.Sprintf("/api/runs/%d/events?partial=1", run.ID)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	follow := func(s *testServer) *sse.Decoder {
		resp := s.send(ctx, "GET", path, nil)
		t.Cleanup(func() { resp.Body.Close() })
		return sse.NewDecoder(resp.Body)
	}
	// waitFor reads events up to the partial line text; the log lines
	// before it must be want.
	waitFor := func(dec *sse.Decoder, text string, want ...string) {
		t.Helper()
		var lines []string
		for {
			ev, err := dec.Next()
			if err != nil {
				t.Fatalf("waiting for the partial line %q: %v (lines %q)", text, err, lines)
			}
			switch ev.Name {
			case "log":
				lines = append(lines, ev.Lines()...)
			case "partial":
				if got := ev.Lines(); len(got) == 1 && got[0] == text {
					if !slices.Equal(lines, want) {
						t.Fatalf("lines before the partial line: %q, want %q", lines, want)
					}
					return
				}
			}
		}
	}
	waitFor(follow(a), "Password: ", "start")
	// B copies the log only now, after the prompt was printed.
	onB := follow(b)
	waitFor(onB, "Password: ", "start")
	a.release(run.ID)
	for {
		ev, err := onB.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Name == "log" {
			if got := ev.Lines(); !slices.Equal(got, []string{"Password: ok"}) {
				t.Fatalf("B: %q, want the finished line", got)
			}
			break
		}
	}
}

// A run waiting at a gate on node A is answered through replica B: B
// shows it waiting, and its answer reaches the script on A.
func TestGateAnsweredThroughAReplica(t *testing.T) {
	a, rs, _ := startCluster(t, 1)
	b := rs[0]
	run := a.trigger("gated", nil)
	b.waitRun(run.ID, func(r *api.Run) bool { return r.State == api.Waiting })
	code, _, body := b.do("POST", fmt.Sprintf("/api/runs/%d/gate", run.ID), `{"decision":"reject","reason":"from B"}`, "Content-Type", "application/json")
	if code != http.StatusOK {
		t.Fatalf("answer through B: %d %s", code, body)
	}
	done := a.waitRun(run.ID, isFinished)
	if g := done.Gates[0]; g.Decision != "rejected" || g.Reason != "from B" || !bytes.Contains(a.logFile(run.ID), []byte("gate said 1\n")) {
		t.Fatalf("gate %+v, log %q", g, a.logFile(run.ID))
	}
}
