package jobs

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/logfile"
)

// A run whose process ended is never left running: when the database
// refuses its final record, the record waits beside the log, and the next
// start restores it instead of calling the run interrupted.
func TestFinalRecordSurvivesAFailedDatabaseWrite(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "release")
	cfg := mustParse(t, `
jobs:
  j:
    env: {GATE: `+gate+`}
    run: |
      echo started
      while [ ! -e "$GATE" ]; do sleep 0.01; done
      echo done
`)
	dir := t.TempDir()
	n, err := startNode(context.Background(), dir, nil, cfg, RunnerOptions{Zone: DefaultZone})
	if err != nil {
		t.Fatal(err)
	}
	r := n.runner
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = r.Run(ctx) }()
	run := trigger(t, r, "j", nil)
	waitRun(t, r, run.ID, func(r *Run) bool { return r.State == Running })
	n.eng.Close() // every write from now on fails
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := waitRun(t, r, run.ID, finished); got.State != Succeeded {
		t.Fatalf("in memory: %s", got.State)
	}
	if _, err := os.Stat(logfile.FinalPath(r.LogPath(run.ID))); err != nil {
		t.Fatalf("no final record beside the log: %v", err)
	}
	cancel()
	<-ran
	n.stop()

	// The next start, on the same data.
	n2, err := startNode(context.Background(), dir, nil, cfg, RunnerOptions{Zone: DefaultZone})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.stop()
	if before, _ := n2.store.Get(context.Background(), run.ID); before.State.Finished() {
		t.Fatalf("the records should not know the run ended: %s", before.State)
	}
	if err := n2.runner.Recover(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	got, err := n2.store.Get(context.Background(), run.ID)
	if err != nil || got.State != Succeeded || got.ExitCode == nil || *got.ExitCode != 0 || got.LogLines != 2 {
		t.Fatalf("after restart: %+v %v, want succeeded with its 2 lines", got, err)
	}
	if _, err := os.Stat(logfile.FinalPath(r.LogPath(run.ID))); !os.IsNotExist(err) {
		t.Errorf("final record left beside the log once stored: %v", err)
	}
}

// Watching costs nothing for runs that are not live: asking about any
// number of finished or unknown runs leaves nothing behind.
func TestOnlyLiveRunsAreWatched(t *testing.T) {
	r, _ := testRunner(t, "jobs:\n  j: {run: echo hi}\n")
	run := trigger(t, r, "j", nil)
	waitRun(t, r, run.ID, finished)
	for _, id := range []int64{run.ID, 99999, -1} {
		r.Watch(id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.active) != 0 {
		t.Errorf("%d runs still active", len(r.active))
	}
}

// Every way a run ends goes through finish: the record is durable and the
// observers hear of it once, after the slot and lock are free.
func TestEveryEndGoesThroughFinish(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "g")
	cfg := mustParse(t, `
max_concurrent_runs: 1
jobs:
  slow:
    lock: one
    timeout: 300ms
    run: sleep 5
  ok: {run: "true", lock: one}
  gated:
    lock: one
    env: {GATE: `+gate+`}
    run: while [ ! -e "$GATE" ]; do sleep 0.01; done
`)
	type seen struct {
		id      int64
		state   State
		running int
		locked  bool
	}
	heard := make(chan seen, 16)
	var r *Runner
	n := testNode(t, t.TempDir(), nil, cfg, RunnerOptions{KillGrace: 100 * time.Millisecond,
		OnFinish: func(run *Run) {
			r.mu.Lock()
			_, locked := r.locks["one"]
			s := seen{run.ID, run.State, r.running, locked && r.locks["one"] == run.ID}
			r.mu.Unlock()
			heard <- s
		}})
	r = n.runner
	store := n.store

	timedOut := trigger(t, r, "slow", nil)
	queued := trigger(t, r, "ok", nil)
	if err := r.Cancel(context.Background(), queued.ID, "test"); err != nil {
		t.Fatal(err)
	}
	canceledRunning := trigger(t, r, "gated", nil)
	waitRun(t, r, canceledRunning.ID, func(r *Run) bool { return r.State == Running })
	if err := r.Cancel(context.Background(), canceledRunning.ID, "test"); err != nil {
		t.Fatal(err)
	}
	want := map[int64]State{timedOut.ID: TimedOut, queued.ID: Canceled, canceledRunning.ID: Canceled}
	for range len(want) {
		select {
		case s := <-heard:
			if want[s.id] != s.state {
				t.Errorf("#%d: observer heard %s, want %s", s.id, s.state, want[s.id])
			}
			if s.locked {
				t.Errorf("#%d: observer called while its run still held the lock", s.id)
			}
			delete(want, s.id)
		case <-time.After(deadline):
			t.Fatalf("observers not called for %v", want)
		}
	}
	for id, st := range map[int64]State{timedOut.ID: TimedOut, queued.ID: Canceled, canceledRunning.ID: Canceled} {
		if got, err := store.Get(context.Background(), id); err != nil || got.State != st {
			t.Errorf("#%d stored as %v (%v), want %s", id, got, err, st)
		}
	}
	// Who canceled is the run's error; a stopped job's log ends saying why.
	for _, tc := range []struct {
		id          int64
		err, lastRE string
	}{
		{queued.ID, "canceled by test", ""},
		{canceledRunning.ID, "canceled by test", `^\[shiplog: canceled by test at 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC; the job was stopped\]$`},
		{timedOut.ID, "timed out after 300ms", `^\[shiplog: timed out after 300ms at .* UTC; the job was stopped\]$`},
	} {
		got, _ := store.Get(context.Background(), tc.id)
		if got.Error != tc.err {
			t.Errorf("#%d: error %q, want %q", tc.id, got.Error, tc.err)
		}
		if tc.lastRE == "" {
			continue
		}
		log := readLog(t, r, tc.id)
		lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
		if last := lines[len(lines)-1]; !regexp.MustCompile(tc.lastRE).MatchString(last) || got.LogLines != int64(len(lines)) {
			t.Errorf("#%d: log ends %q (%d lines, record says %d), want a line matching %s", tc.id, last, len(lines), got.LogLines, tc.lastRE)
		}
	}
}
