package jobs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shiplog/shiplog/engine"
)

// Two runners on one engine share its queue: the runs of one lock,
// triggered through either, run one at a time (the job checks with an
// atomic mkdir) and in the order they were triggered; a cancel through
// one node stops a run on the other.
func TestLockIsClusterWide(t *testing.T) {
	guard := filepath.Join(t.TempDir(), "guard")
	cfg := mustParse(t, fmt.Sprintf(`
max_concurrent_runs: 4
jobs:
  deploy:
    lock: deploy-production
    env: {GUARD: %s}
    run: |
      mkdir "$GUARD" || { echo "overlap"; exit 3; }
      echo "deploying"
      sleep 0.2
      rmdir "$GUARD"
  hold:
    run: |
      echo "::progress::1 held"
      sleep 60
`, guard))
	a := testNode(t, t.TempDir(), nil, cfg, RunnerOptions{KillGrace: 300 * time.Millisecond})
	b := testNode(t, t.TempDir(), a.eng, cfg, RunnerOptions{KillGrace: 300 * time.Millisecond})
	var ids []int64
	for i := range 6 {
		r := []*Runner{a.runner, b.runner}[i%2]
		ids = append(ids, trigger(t, r, "deploy", nil).ID)
	}
	var runs []*Run
	nodes := map[string]bool{}
	for _, id := range ids {
		run := waitRun(t, a.runner, id, finished)
		if run.State != Succeeded {
			t.Fatalf("#%d %s (%s): two runs of the lock overlapped", id, run.State, run.Error)
		}
		runs = append(runs, run)
		nodes[run.Node] = true
	}
	for i := 1; i < len(runs); i++ {
		if runs[i].StartedAt.Before(*runs[i-1].FinishedAt) {
			t.Errorf("#%d started at %v, before #%d finished at %v", runs[i].ID, runs[i].StartedAt, runs[i-1].ID, runs[i-1].FinishedAt)
		}
	}
	t.Logf("ran on %d nodes", len(nodes))

	// Cancel through the node that does not run it.
	held := trigger(t, a.runner, "hold", nil)
	run := waitRun(t, a.runner, held.ID, started)
	other := map[string]*Runner{a.runner.opts.Node: b.runner, b.runner.opts.Node: a.runner}[run.Node]
	if err := other.Cancel(context.Background(), held.ID, "ana"); err != nil {
		t.Fatalf("cancel through the other node: %v", err)
	}
	if run := waitRun(t, other, held.ID, finished); run.State != Canceled || run.Error != "canceled by ana" {
		t.Fatalf("after cancel through the other node: %s %q", run.State, run.Error)
	}
	if err := other.Cancel(context.Background(), held.ID, "ana"); err == nil {
		t.Fatal("a second cancel of a finished run succeeded")
	}
}

// A run of a lock goes to a runner with a free slot, not to one that is
// busy and would keep it (and its lock's line) waiting: each of several
// runs of the lock starts while the other runner's slot is taken.
func TestIdleRunnerTakesALockedRun(t *testing.T) {
	dir := t.TempDir()
	cfg := mustParse(t, fmt.Sprintf(`
max_concurrent_runs: 1
jobs:
  deploy:
    lock: deploy-production
    run: echo "deploying"
  busy:
    env: {GATE: %[1]s}
%[2]s
`, dir, gateJob))
	a := testNode(t, t.TempDir(), nil, cfg, RunnerOptions{})
	b := testNode(t, t.TempDir(), a.eng, cfg, RunnerOptions{})
	busy := trigger(t, a.runner, "busy", nil)
	run := waitRun(t, a.runner, busy.ID, started)
	idle := map[string]string{a.runner.opts.Node: b.runner.opts.Node, b.runner.opts.Node: a.runner.opts.Node}[run.Node]
	for i := range 6 {
		r := []*Runner{a.runner, b.runner}[i%2]
		id := trigger(t, r, "deploy", nil).ID
		if done := waitRun(t, r, id, finished); done.State != Succeeded || done.Node != idle {
			t.Fatalf("deploy #%d: %s on %q, want it run by the idle runner %q", id, done.State, done.Node, idle)
		}
	}
	release(t, dir, busy.ID)
	waitRun(t, a.runner, busy.ID, finished)
}

// lapseJobs: hold runs until killed; next says it started; busy takes a
// runner's one slot.
const lapseJobs = `
max_concurrent_runs: 1
jobs:
  busy:
    run: sleep 300
  hold:
    lock: deploy-production
    run: |
      echo "::progress::1 holding"
      sleep 300
  next:
    lock: deploy-production
    run: echo next
`

// helperRunner is a runner in a process of its own, on the engine at url,
// until it is killed.
func helperRunner(url, dir string) {
	eng, err := engine.Start(context.Background(), engine.Config{URL: url, Lease: shortLease})
	if err != nil {
		panic(err)
	}
	cfg, err := ParseConfig("lapse.yaml", []byte(lapseJobs))
	if err != nil {
		panic(err)
	}
	n, err := startNode(context.Background(), dir, eng, cfg, RunnerOptions{Zone: DefaultZone, Node: "helper",
		OnFinish: func(run *Run) { fmt.Printf("finished %d %s\n", run.ID, run.State) }})
	if err != nil {
		panic(err)
	}
	fmt.Println("ready")
	_ = n.runner.Run(context.Background())
}

// helperProc is a helper runner process (helperRunner).
type helperProc struct {
	cmd  *exec.Cmd
	said *bufio.Reader // what it prints after "ready"
	kill func()        // once; also at the end of the test
}

// lapseCluster starts an engine that listens, a node on it whose runner
// the test starts (so that the helper takes the first run), and a helper
// runner process on it, ready.
func lapseCluster(t *testing.T) (*engine.Engine, *node, *helperProc) {
	t.Helper()
	eng, err := engine.Start(t.Context(), engine.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", Lease: shortLease})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	here, err := startNode(context.Background(), t.TempDir(), eng, mustParse(t, lapseJobs), RunnerOptions{Zone: DefaultZone, Node: "here"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(here.stop)
	cmd, said := startHelper(t, "SHIPLOG_TEST_RUNNER_URL="+eng.ClientURL(), "SHIPLOG_TEST_RUNNER_DIR="+t.TempDir())
	var once sync.Once
	h := &helperProc{cmd: cmd, said: said, kill: func() {
		once.Do(func() { _ = cmd.Process.Signal(syscall.SIGCONT); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}}
	t.Cleanup(h.kill)
	if line, err := said.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper said %q (%v)", line, err)
	}
	return eng, here, h
}

// startHelper starts this test binary as a helper process, with env
// added to its environment (which TestMain reads), and returns it with
// what it prints.
func startHelper(t *testing.T, env ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewReader(out)
}

// A runner that dies holding a lock loses it when its lease lapses:
// another runner of the zone marks its run interrupted and starts the
// lock's next run, within the lease and a second.
func TestRunnerKilledHoldingALock(t *testing.T) {
	eng, here, helper := lapseCluster(t)

	held := trigger(t, here.runner, "hold", nil)
	run := waitRun(t, here.runner, held.ID, started)
	if run.Node != "helper" {
		t.Fatalf("the held run runs on %q, want the helper", run.Node)
	}
	next := trigger(t, here.runner, "next", nil)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = here.runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })
	if w := waitRun(t, here.runner, next.ID, func(r *Run) bool { return r.Wait != nil && r.Wait.Holder != 0 }).Wait; w.Holder != held.ID {
		t.Fatalf("the next run waits for %+v", w)
	}

	// A lease renewed outlives its first term: past it, the run still
	// holds the lock.
	<-time.After(shortLease + shortLease/2)
	if run, _ := here.runner.Get(context.Background(), held.ID); run.State != Running || run.Node != "helper" {
		t.Fatalf("past one lease term, the held run is %s on %q", run.State, run.Node)
	}
	if run, _ := here.runner.Get(context.Background(), next.ID); run.State != Queued {
		t.Fatalf("past one lease term, the lock's next run is %s", run.State)
	}

	killed := time.Now()
	helper.kill()
	lapsed := waitRun(t, here.runner, held.ID, finished)
	if lapsed.State != Interrupted || !strings.Contains(lapsed.Error, "helper") {
		t.Fatalf("the dead runner's run is %s (%q), want interrupted, naming its runner", lapsed.State, lapsed.Error)
	}
	// Its log ends where the dead runner left it, so every copy of it
	// ends too, and the record says how long it is.
	mctx, mcancel := context.WithTimeout(context.Background(), deadline)
	defer mcancel()
	size, err := eng.MirrorLog(mctx, held.ID, filepath.Join(t.TempDir(), "copy.log"), nil)
	if err != nil || size == 0 || size != lapsed.LogBytes || lapsed.LogLines != 1 {
		t.Fatalf("copy of the dead runner's log: %d bytes (%v); the record says %d bytes, %d lines", size, err, lapsed.LogBytes, lapsed.LogLines)
	}
	after := waitRun(t, here.runner, next.ID, finished)
	if after.State != Succeeded || after.Node != "here" {
		t.Fatalf("the lock's next run: %s on %q", after.State, after.Node)
	}
	took := after.StartedAt.Sub(killed)
	t.Logf("the next run started %v after the kill (lease %v)", took.Round(time.Millisecond), shortLease)
	if took > shortLease+time.Second {
		t.Errorf("the next run started %v after the kill, want within the lease (%v) and a second", took, shortLease)
	}
}

// A runner with no free slot still lets go the lock of a runner that died
// holding it: it marks that run interrupted within the lease and a second.
func TestBusyRunnerLetsADeadRunnersLockGo(t *testing.T) {
	_, here, helper := lapseCluster(t)
	held := trigger(t, here.runner, "hold", nil)
	if run := waitRun(t, here.runner, held.ID, started); run.Node != "helper" {
		t.Fatalf("the held run runs on %q, want the helper", run.Node)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = here.runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })
	busy := trigger(t, here.runner, "busy", nil)
	if run := waitRun(t, here.runner, busy.ID, func(r *Run) bool { return r.State == Running }); run.Node != "here" {
		t.Fatalf("the busy run runs on %q", run.Node)
	}
	killed := time.Now()
	helper.kill()
	lapsed := waitRun(t, here.runner, held.ID, finished)
	took := time.Since(killed)
	if lapsed.State != Interrupted {
		t.Fatalf("the dead runner's run is %s", lapsed.State)
	}
	t.Logf("marked interrupted %v after the kill by a runner with no free slot (lease %v)", took.Round(time.Millisecond), shortLease)
	if took > shortLease+time.Second {
		t.Errorf("the dead runner's run was let go %v after the kill, want within the lease and a second", took)
	}
	if err := here.runner.Cancel(context.Background(), busy.ID, "test"); err != nil {
		t.Fatal(err)
	}
}

// A runner that cannot renew its lease on a running run (the engine is
// out of reach) stops the run within half the lease, before another runner
// may take its lock.
func TestRunStopsWhenItsLeaseCannotBeRenewed(t *testing.T) {
	cfg := mustParse(t, lapseJobs)
	dir := t.TempDir()
	n, err := startNode(context.Background(), dir, nil, cfg, RunnerOptions{Zone: DefaultZone, Lease: shortLease, KillGrace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = n.runner.Run(ctx) }()
	defer func() { cancel(); <-ran; n.stop() }()
	held := trigger(t, n.runner, "hold", nil)
	run := waitRun(t, n.runner, held.ID, started)
	lost := time.Now()
	n.eng.Close()
	// The job's process group goes (the shell is its leader).
	processGone(t, run.PID)
	took := time.Since(lost)
	t.Logf("stopped %v after the engine went (lease %v)", took.Round(time.Millisecond), shortLease)
	// The lease lapses a term after its last renewal, which was at most
	// a fifth of a term before the engine went.
	if lapse := shortLease * 4 / 5; took > lapse {
		t.Errorf("the run was stopped %v after the engine went, want within %v, before its lease lapsed", took, lapse)
	}
	if got := waitRun(t, n.runner, held.ID, finished); got.State != Interrupted || !strings.Contains(got.Error, "lease could not be renewed") {
		t.Fatalf("the run whose lease was lost: %s %q", got.State, got.Error)
	}
}

// Runs queued by a shiplog from before the work queue (in the records
// only) are put in it at the first start that creates it, and run.
func TestRunsQueuedBeforeTheQueueRun(t *testing.T) {
	cfg := mustParse(t, "jobs:\n  j: {run: 'echo old'}\n")
	n, err := startNode(context.Background(), t.TempDir(), nil, cfg, RunnerOptions{Zone: DefaultZone})
	if err != nil {
		t.Fatal(err)
	}
	defer n.stop()
	if !n.eng.WorkIsNew() {
		t.Fatal("a new engine's work queue is not new")
	}
	old := &Run{Job: "j", Params: map[string]string{}, State: Queued, QueuedAt: recordTime(), TriggeredBy: "old"}
	if err := n.store.Insert(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	if err := n.runner.Recover(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = n.runner.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	if run := waitRun(t, n.runner, old.ID, finished); run.State != Succeeded {
		t.Fatalf("the run queued before the queue: %s", run.State)
	}
}

// A run canceled through another node while it waits in a runner's own
// line (taken from the queue, no slot yet) never starts: the runner's
// claim on it is refused, as the record moved on.
func TestCanceledElsewhereBeforeItsStartNeverStarts(t *testing.T) {
	dir := t.TempDir()
	cfg := mustParse(t, fmt.Sprintf(`
max_concurrent_runs: 1
jobs:
  hold:
    env: {GATE: %[1]s}
%[2]s
  other:
    lock: other
    run: echo "ran"
`, dir, gateJob))
	a := testNode(t, t.TempDir(), nil, cfg, RunnerOptions{KillGrace: 300 * time.Millisecond})
	b := testNode(t, t.TempDir(), a.eng, cfg, RunnerOptions{KillGrace: 300 * time.Millisecond})
	// Both runners busy: the first to be handed the lock's run gives it
	// back for want of room, and the other keeps it, handed out again,
	// in its own line until its slot frees.
	holds := map[string]int64{}
	for range 2 {
		h := trigger(t, a.runner, "hold", nil)
		holds[waitRun(t, a.runner, h.ID, started).Node] = h.ID
	}
	if len(holds) != 2 {
		t.Fatalf("the two holds run on %v, want one on each runner", holds)
	}
	other := trigger(t, a.runner, "other", nil)
	// Taking writes nothing anyone can watch: look.
	var keeper, canceler *node
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(deadline)
	for keeper == nil {
		for _, n := range []*node{a, b} {
			n.runner.mu.Lock()
			_, taken := n.runner.active[other.ID]
			n.runner.mu.Unlock()
			if taken {
				keeper, canceler = n, map[*node]*node{a: b, b: a}[n]
			}
		}
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatal("no runner kept the run")
		}
	}
	if err := canceler.runner.Cancel(context.Background(), other.ID, "bob"); err != nil {
		t.Fatalf("cancel through the other node: %v", err)
	}
	held := holds[keeper.runner.opts.Node]
	release(t, dir, held)
	waitRun(t, keeper.runner, held, finished)
	// The keeper runs nothing more: the next run it takes shows its slot
	// is free.
	after := trigger(t, keeper.runner, "other", nil)
	waitRun(t, keeper.runner, after.ID, finished)
	run, err := keeper.store.Fresh(context.Background(), other.ID)
	if err != nil || run.State != Canceled || run.StartedAt != nil || run.Error != "canceled by bob" {
		t.Fatalf("the run canceled through the other node: %+v (%v)", run, err)
	}
	if log, _ := os.ReadFile(keeper.runner.LogPath(other.ID)); len(log) != 0 {
		t.Fatalf("the run canceled through the other node ran: its log says %q", log)
	}
	for _, h := range holds {
		release(t, dir, h)
	}
}

// A runner frozen (SIGSTOP) while it holds a lock: the job's watchdog
// kills the job within half the lease, before the lease lapses; then
// another runner marks the run interrupted and starts the lock's next
// run; and the frozen runner's late final record, once it thaws, is
// refused.
func TestFrozenRunnersJobIsKilled(t *testing.T) {
	_, here, helper := lapseCluster(t)
	cmd, said := helper.cmd, helper.said

	held := trigger(t, here.runner, "hold", nil)
	run := waitRun(t, here.runner, held.ID, started)
	if run.Node != "helper" {
		t.Fatalf("the held run runs on %q, want the helper", run.Node)
	}
	next := trigger(t, here.runner, "next", nil)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = here.runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })

	frozen := time.Now()
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	processGone(t, run.PID) // the watchdog and its job, one process group
	took := time.Since(frozen)
	t.Logf("the frozen runner's job was killed %v after the freeze (lease %v)", took.Round(time.Millisecond), shortLease)
	// Half a lease after the last heartbeat, which came at most a fifth of
	// a lease before the freeze: before the lease lapses.
	if limit := shortLease/2 + shortLease/5 + shortLease/10; took > limit {
		t.Errorf("the frozen runner's job was killed %v after the freeze, want within %v", took, limit)
	}
	lapsed := waitRun(t, here.runner, held.ID, finished)
	if lapsed.State != Interrupted {
		t.Fatalf("the frozen runner's run is %s, want interrupted", lapsed.State)
	}
	if after := waitRun(t, here.runner, next.ID, finished); after.State != Succeeded || after.Node != "here" {
		t.Fatalf("the lock's next run: %s on %q", after.State, after.Node)
	}

	// Thawed, the runner finishes its run as it saw it end (killed); its
	// write is refused, and the record stays as the other runner made it.
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("finished %d ", held.ID)
	for {
		line, err := said.ReadString('\n')
		if err != nil {
			t.Fatalf("the thawed helper said nothing of run %d: %v", held.ID, err)
		}
		if strings.HasPrefix(line, want) {
			break
		}
	}
	if got, err := here.store.Fresh(context.Background(), held.ID); err != nil || got.State != Interrupted || got.Error != lapsed.Error {
		t.Fatalf("after the frozen runner thawed, the record is %s %q (%v), want it as it was: %s %q", got.State, got.Error, err, lapsed.State, lapsed.Error)
	}
}
