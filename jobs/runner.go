package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxAnnotations bounds what one run can store; a job that prints an error
// per line should not bloat the database.
const maxAnnotations = 200

// RunnerOptions configures a Runner.
type RunnerOptions struct {
	LogDir string
	Logger *slog.Logger
	// KillGrace is how long a canceled or timed-out run has between SIGTERM
	// and SIGKILL.
	KillGrace time.Duration
	// ShutdownGrace is how long running runs may go on finishing when the
	// runner stops, before they are stopped and marked interrupted.
	ShutdownGrace time.Duration
	// OnLogClosed is called once a run's log file is complete, with its final
	// size, after the run's final state is stored.
	OnLogClosed func(id int64, size int64)
	// OnFinish is called with each run that finished in this process.
	OnFinish func(run *Run)
	// Secrets are values masked in every log.
	Secrets []string
}

// Runner executes runs in the background: a FIFO queue, a concurrency limit,
// locks, cancel and timeout. It owns the live state of unfinished runs; the
// Store holds the rest.
type Runner struct {
	cfg   *Config
	store *Store
	opts  RunnerOptions
	log   *slog.Logger

	mu      sync.Mutex
	queue   []*task         // queued, oldest first
	active  map[int64]*task // queued or running
	locks   map[string]int64
	running int
	closed  bool
	wake    chan struct{}
	wg      sync.WaitGroup
	// Runs finished lately, as stored, oldest first: everyone watching a run
	// asks for it as it ends, and scripts poll it after.
	recent     map[int64]*Run
	recentFIFO []int64
}

// keepRecent is how many finished runs the runner keeps at hand.
const keepRecent = 256

type task struct {
	run       *Run // guarded by Runner.mu
	job       *Job
	lock      string
	stop      chan struct{} // closed to stop the run
	stopOnce  sync.Once
	reason    State // why stop was closed
	reasonMsg string
	lw        *logWriter
	persistMu sync.Mutex // orders store writes of this run
	persisted time.Time
	changed   chan struct{} // closed at the run's next change; nil until watched
}

// NewRunner returns a runner for the jobs in cfg, recording runs in store.
func NewRunner(cfg *Config, store *Store, opts RunnerOptions) *Runner {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.KillGrace == 0 {
		opts.KillGrace = 5 * time.Second
	}
	return &Runner{
		cfg: cfg, store: store, opts: opts, log: opts.Logger,
		active: map[int64]*task{}, locks: map[string]int64{},
		wake:   make(chan struct{}, 1),
		recent: map[int64]*Run{},
	}
}

// Config returns the job definitions the runner serves.
func (r *Runner) Config() *Config { return r.cfg }

// LogPath is where the log of run id lives. IDs are integers, so no request
// can steer it elsewhere.
func (r *Runner) LogPath(id int64) string {
	return filepath.Join(r.opts.LogDir, strconv.FormatInt(id, 10)+".log")
}

// Recover settles runs a previous process left unfinished: a run whose
// final record waits beside its log gets it; other running ones become
// interrupted (any process they left is killed); queued ones are queued
// again. What the process held of a last unfinished line goes into the log.
// Call it before Run.
func (r *Runner) Recover(ctx context.Context) error {
	runs, err := r.store.List(ctx, Filter{States: []State{Queued, Running}})
	if err != nil {
		return err
	}
	slices.Reverse(runs) // oldest first, to keep queue order
	for _, run := range runs {
		if done, ok := readFinal(r.LogPath(run.ID)+finalSuffix, run.ID); ok {
			r.log.Warn("run finished before the last stop, but its record had not reached the database: restored", "run_id", run.ID, "state", done.State)
			t := &task{run: done}
			r.storeFinal(t, done) //nolint:contextcheck // a run's final record is stored whatever the caller's context
			continue
		}
		if run.State == Running {
			if n := killLeftovers(run.ID, run.PID); n > 0 {
				r.log.Warn("killed processes left by an interrupted run", "run_id", run.ID, "processes", n)
			}
			if err := keepPartial(r.LogPath(run.ID)); err != nil {
				r.log.Error("keep the unfinished last line", "run_id", run.ID, "err", err)
			}
			r.finish(&task{run: run}, outcome{state: Interrupted, msg: "the server stopped while this run was running"}, false) //nolint:contextcheck // see finish
			continue
		}
		job, err := r.cfg.Job(run.Job)
		if err == nil {
			_, err = job.ValidateParams(run.Params)
		}
		if err != nil {
			r.finish(&task{run: run}, outcome{state: Interrupted, msg: fmt.Sprintf("not started after a restart: %v", err)}, false) //nolint:contextcheck // see finish
			continue
		}
		t := &task{run: run, job: job, lock: job.LockName(run.Params), stop: make(chan struct{})}
		r.mu.Lock()
		r.active[run.ID] = t
		r.queue = append(r.queue, t)
		r.mu.Unlock()
	}
	r.kick()
	return nil
}

// countLog returns the size and line count of a log file.
func countLog(path string) (size, lines int64) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	for {
		n, err := f.Read(buf)
		size += int64(n)
		lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		if err != nil {
			return size, lines
		}
	}
}

// Run dispatches queued runs until ctx ends, then lets running runs finish
// for ShutdownGrace before stopping them.
func (r *Runner) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			r.shutdown()
			return nil
		case <-r.wake:
			r.dispatch() //nolint:contextcheck // runs outlive any request; their records are written regardless
		}
	}
}

func (r *Runner) shutdown() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	timer := time.NewTimer(r.opts.ShutdownGrace)
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
	}
	r.mu.Lock()
	for _, t := range r.active {
		if t.run.State == Running {
			t.halt(Interrupted, "the server shut down while this run was running")
		}
	}
	r.mu.Unlock()
	<-done
}

func (r *Runner) kick() {
	select {
	case r.wake <- struct{}{}:
	default: // a wake-up is already pending; it will see this change too
	}
}

// dispatch starts every queued run that may start now, oldest first; a run
// waiting for its lock does not hold back the runs behind it.
func (r *Runner) dispatch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	for i := 0; i < len(r.queue) && r.running < r.cfg.MaxConcurrentRuns; {
		t := r.queue[i]
		if t.lock != "" {
			if _, held := r.locks[t.lock]; held {
				i++
				continue
			}
			r.locks[t.lock] = t.run.ID
		}
		r.queue = slices.Delete(r.queue, i, i+1)
		r.running++
		r.wg.Add(1)
		go r.execute(t)
	}
}

// Trigger validates params and queues a run of the named job.
func (r *Runner) Trigger(ctx context.Context, jobName string, params map[string]string, by string) (*Run, error) {
	return r.trigger(ctx, jobName, params, by, 0)
}

// Rerun queues a new run with the job and params of run id.
func (r *Runner) Rerun(ctx context.Context, id int64, by string) (*Run, error) {
	old, err := r.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.trigger(ctx, old.Job, old.Params, by, old.ID)
}

func (r *Runner) trigger(ctx context.Context, jobName string, params map[string]string, by string, rerunOf int64) (*Run, error) {
	job, err := r.cfg.Job(jobName)
	if err != nil {
		return nil, err
	}
	vals, err := job.ValidateParams(params)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, ErrShuttingDown
	}
	run := &Run{Job: job.Name, Params: vals, State: Queued, TriggeredBy: by, RerunOf: rerunOf, QueuedAt: time.Now()}
	if err := r.store.Insert(ctx, run); err != nil {
		return nil, noSpace(err)
	}
	t := &task{run: run, job: job, lock: job.LockName(vals), stop: make(chan struct{})}
	// Every run has a log file from the start, so readers never wait for one.
	f, err := os.OpenFile(r.LogPath(run.ID), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		// Recorded as failed, so the history says what happened.
		r.finish(t, outcome{state: Failed, msg: fmt.Sprintf("create log: %v", err)}, false) //nolint:contextcheck // the failure is stored even if the request goes away
		return nil, noSpace(fmt.Errorf("create log: %w", err))
	}
	f.Close()
	r.mu.Lock()
	r.active[run.ID] = t
	r.queue = append(r.queue, t)
	snap := run.clone()
	r.mu.Unlock()
	r.log.Info("run queued", "run_id", run.ID, "job", job.Name, "by", by)
	r.kick()
	return snap, nil
}

// Get returns a snapshot of run id.
func (r *Runner) Get(ctx context.Context, id int64) (*Run, error) {
	r.mu.Lock()
	if t, ok := r.active[id]; ok {
		snap := t.run.clone()
		r.mu.Unlock()
		return snap, nil
	}
	if run, ok := r.recent[id]; ok {
		snap := run.clone()
		r.mu.Unlock()
		return snap, nil
	}
	r.mu.Unlock()
	return r.store.Get(ctx, id)
}

// List returns runs matching f, newest first, live ones as they are now.
func (r *Runner) List(ctx context.Context, f Filter) ([]*Run, error) {
	runs, err := r.store.List(ctx, f)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, run := range runs {
		if t, ok := r.active[run.ID]; ok {
			runs[i] = t.run.clone()
		}
	}
	// A live run that has changed state since the query may no longer match.
	return slices.DeleteFunc(runs, func(run *Run) bool {
		return len(f.States) > 0 && !slices.Contains(f.States, run.State)
	}), nil
}

// CountByState returns how many runs are in each state.
func (r *Runner) CountByState(ctx context.Context) (map[State]int, error) {
	return r.store.CountByState(ctx)
}

// QueueLength is the number of runs waiting to start.
func (r *Runner) QueueLength() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// Watch returns a channel closed at the next change of run id's state,
// progress or annotations; nil (never closed) when the run is not queued
// or running: it will not change. The channel belongs to the run, so
// watching costs nothing once the run has ended, however many ask.
func (r *Runner) Watch(id int64) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.active[id]
	if !ok {
		return nil
	}
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

// LiveLog returns the bytes and whole lines written so far to the log of
// run id, while it runs; ok is false for a run that is not running.
func (r *Runner) LiveLog(id int64) (bytes, lines int64, ok bool) {
	r.mu.Lock()
	t, active := r.active[id]
	var lw *logWriter
	if active {
		lw = t.lw
	}
	r.mu.Unlock()
	if lw == nil {
		return 0, 0, false
	}
	bytes, lines = lw.Counts()
	return bytes, lines, true
}

// notify wakes the watchers of t; r.mu must be held.
func (r *Runner) notify(t *task) {
	if t.lw != nil {
		t.run.LogBytes, t.run.LogLines = t.lw.Counts()
	}
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// Cancel stops run id: a queued run never starts, a running one is
// terminated with its whole process group.
func (r *Runner) Cancel(ctx context.Context, id int64) error {
	r.mu.Lock()
	t, ok := r.active[id]
	if !ok {
		r.mu.Unlock()
		run, err := r.store.Get(ctx, id)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: #%d is %s", ErrFinished, run.ID, run.State)
	}
	if t.run.State == Queued {
		r.queue = slices.DeleteFunc(r.queue, func(q *task) bool { return q == t })
		t.run.State = Canceled // at once, so a second cancel finds it finished
		r.mu.Unlock()
		r.finish(t, outcome{state: Canceled}, false) //nolint:contextcheck // the cancel is stored even if its request goes away
		return nil
	}
	if t.run.State.Finished() {
		r.mu.Unlock()
		return fmt.Errorf("%w: #%d is %s", ErrFinished, id, t.run.State)
	}
	t.halt(Canceled, "")
	r.mu.Unlock()
	return nil
}

func (t *task) halt(reason State, msg string) {
	t.stopOnce.Do(func() {
		t.reason, t.reasonMsg = reason, msg
		close(t.stop)
	})
}

// persist stores snap unless a newer snapshot of the run was stored already.
func (r *Runner) persist(t *task, snap *Run) {
	t.persistMu.Lock()
	defer t.persistMu.Unlock()
	if err := r.store.Update(context.Background(), snap); err != nil {
		r.log.Error("store run", "run_id", snap.ID, "err", err)
	}
	t.persisted = time.Now()
}

func (r *Runner) commandEnv(t *task) []string {
	env := make([]string, 0, len(os.Environ())+len(t.job.Env)+len(t.run.Params)+2)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(kv, "SHIPLOG_") && !r.cfg.hidden[name] {
			env = append(env, kv)
		}
	}
	for _, sec := range t.job.Secrets {
		env = append(env, sec.Name+"="+sec.Value)
	}
	for k, v := range t.job.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range t.run.Params {
		env = append(env, k+"="+v)
	}
	return append(env,
		"SHIPLOG_RUN_ID="+strconv.FormatInt(t.run.ID, 10),
		"SHIPLOG_JOB="+t.job.Name,
	)
}

// execute runs t to completion; it owns t's process and log file.
func (r *Runner) execute(t *task) {
	defer r.wg.Done()
	log := r.log.With("run_id", t.run.ID, "job", t.job.Name)
	r.finish(t, r.start(t, log), true)
}

func exitValue(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func (r *Runner) prune(job string) {
	ids, err := r.store.Prune(context.Background(), job, r.cfg.KeepRuns)
	if err != nil {
		r.log.Error("prune runs", "job", job, "err", err)
		return
	}
	r.mu.Lock()
	for _, id := range ids {
		delete(r.recent, id) // its place in recentFIFO goes in time
	}
	r.mu.Unlock()
	for _, id := range ids {
		if err := os.Remove(r.LogPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Error("remove pruned log", "run_id", id, "err", err)
		}
		for _, suffix := range []string{".idx", ".times", finalSuffix, partialSuffix} {
			_ = os.Remove(r.LogPath(id) + suffix)
		}
	}
}

// start executes the command and returns how the run ended.
func (r *Runner) start(t *task, log *slog.Logger) outcome {
	f, err := os.OpenFile(r.LogPath(t.run.ID), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return outcome{state: Failed, msg: fmt.Sprintf("open log: %v", err)}
	}
	defer f.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return outcome{state: Failed, msg: fmt.Sprintf("create pipe: %v", err)}
	}
	defer pr.Close()
	// Not CommandContext: the runner stops a run itself, the whole process
	// group, TERM then KILL after the grace period.
	cmd := exec.Command("/bin/sh", "-c", t.job.Run) //nolint:noctx // see above
	cmd.Dir = t.job.Dir
	cmd.Env = r.commandEnv(t)
	cmd.Stdout, cmd.Stderr = pw, pw // one pipe: interleaved in order of arrival
	// Its own process group, so cancel reaches every descendant; and killed
	// if this process dies, so kill -9 of the server leaves no shell behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return outcome{state: Failed, msg: fmt.Sprintf("start: %v", err)}
	}
	pgid := cmd.Process.Pid

	masks := append([]string(nil), r.opts.Secrets...)
	for _, sec := range t.job.Secrets {
		masks = append(masks, sec.Value)
	}
	idx, err := os.OpenFile(r.LogPath(t.run.ID)+".idx", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		idx = nil // readers rebuild the index from the log
	} else {
		defer idx.Close()
	}
	lw := newLogWriter(f, idx, masks, func(c Command, line int64) { r.onCommand(t, c, line) })
	lw.limit = t.job.MaxLogSize
	if times, err := os.OpenFile(r.LogPath(t.run.ID)+".times", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640); err == nil {
		defer times.Close()
		lw.times = times
	}
	partialPath := r.LogPath(t.run.ID) + partialSuffix
	if part, err := os.OpenFile(partialPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640); err == nil {
		defer func() { part.Close(); _ = os.Remove(partialPath) }()
		lw.partial = part
	}
	now := time.Now()
	r.mu.Lock()
	t.lw = lw
	t.run.State, t.run.StartedAt, t.run.PID = Running, &now, pgid
	r.notify(t)
	snap := t.run.clone()
	r.mu.Unlock()
	r.persist(t, snap)
	log.Info("run started", "pid", pgid)

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 64<<10)
		failed := false
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				lw.Write(buf[:n])
				if lw.Err() != nil && !failed {
					failed = true
					t.halt(Failed, fmt.Sprintf("stopped: %v", lw.Err()))
				}
			}
			if err != nil {
				return
			}
		}
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()

	var timeout <-chan time.Time
	if t.job.Timeout > 0 {
		timer := time.NewTimer(t.job.Timeout)
		defer timer.Stop()
		timeout = timer.C
	}
	var (
		reason    State
		reasonMsg string
		kill      <-chan time.Time
		waitErr   error
		stop      = t.stop
	)
	terminate := func() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		kill = time.After(r.opts.KillGrace)
	}
wait:
	for {
		select {
		case waitErr = <-waitDone:
			break wait
		case <-timeout:
			timeout = nil
			if reason == "" {
				reason, reasonMsg = TimedOut, fmt.Sprintf("timed out after %s", t.job.Timeout)
				log.Info("run timed out")
				terminate()
			}
		case <-stop:
			stop = nil
			if reason == "" {
				reason, reasonMsg = t.reason, t.reasonMsg
				terminate()
			}
		case <-kill:
			kill = nil
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
	// Whatever the shell left in its group (background jobs) goes with it,
	// which also closes their ends of the pipe.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-readDone:
	case <-time.After(2 * time.Second):
		// A descendant that left the group still holds the pipe: stop reading.
		_ = pr.SetReadDeadline(time.Now())
		<-readDone
	}
	lw.Close()
	if err := f.Sync(); err != nil && lw.Err() == nil {
		log.Warn("sync log", "err", err)
	}

	var exit *int
	if cmd.ProcessState != nil {
		code := cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		exit = &code
	}
	switch {
	case reason != "":
		return outcome{reason, exit, reasonMsg}
	case lw.Err() != nil:
		return outcome{Failed, exit, lw.Err().Error()}
	case waitErr != nil && !errors.As(waitErr, new(*exec.ExitError)):
		return outcome{Failed, exit, waitErr.Error()}
	case exit != nil && *exit == 0:
		return outcome{state: Succeeded, exit: exit}
	default:
		return outcome{state: Failed, exit: exit}
	}
}

// onCommand applies a workflow command to the run's record.
func (r *Runner) onCommand(t *task, c Command, line int64) {
	r.mu.Lock()
	switch c.Name {
	case "progress":
		p, ok := ParseProgress(c.Value)
		if !ok {
			r.mu.Unlock()
			return
		}
		t.run.Progress = &p
	case "notice", "warning", "error":
		if len(t.run.Annotations) >= maxAnnotations {
			r.mu.Unlock()
			return
		}
		t.run.Annotations = append(t.run.Annotations, Annotation{Level: c.Name, Message: c.Value, Title: c.Props["title"], Line: line})
	default:
		r.mu.Unlock()
		return
	}
	r.notify(t)
	due := time.Since(t.persisted) > time.Second
	snap := t.run.clone()
	r.mu.Unlock()
	// Progress is live in memory at once; the store gets it at most once a
	// second, and for certain at the end.
	if due {
		r.persist(t, snap)
	}
}

// killLeftovers SIGKILLs the processes of process group pgid that belong to
// run id (checked through their environment, so a reused group ID is never
// touched). It returns how many it killed.
func killLeftovers(id int64, pgid int) int {
	if pgid <= 0 {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	marker := []byte("SHIPLOG_RUN_ID=" + strconv.FormatInt(id, 10) + "\x00")
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if processGroup(pid) != pgid {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), append([]byte{0}, marker...)) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// processGroup reads a process's group from /proc/PID/stat; -1 if unknown.
func processGroup(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return -1
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 3 {
		return -1
	}
	g, err := strconv.Atoi(fields[2])
	if err != nil {
		return -1
	}
	return g
}
