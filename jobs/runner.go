package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

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
	// OnLogGrew is called after each batch of lines is written to a run's
	// log file, on the goroutine that reads the job's output: it must not
	// block.
	OnLogGrew func(id int64)
	// OnPartial is told a run's unfinished last line, masked, each time it
	// changes: text follows the whole lines that end at offset at, and is
	// empty once the line is whole. Called like OnLogGrew; text is valid
	// during the call only.
	OnPartial func(id, at int64, text []byte)
	// OnLogClosed is called once a run's log file is complete, with its final
	// size, after the run's final state is stored.
	OnLogClosed func(id int64, size int64)
	// OnPruned is called with the runs keep_runs removed, after their log
	// files went.
	OnPruned func(ids []int64)
	// OnFinish is called with each run that finished in this process.
	OnFinish func(run *Run)
	// OnGate is called with a run that stopped at a gate, in the
	// background.
	OnGate func(run *Run)
	// ToolDir holds a `shiplog` jobs may call (shiplog gate): it goes
	// first on their PATH. Empty: none.
	ToolDir string
	// Secrets are values masked in every log.
	Secrets []string
	// Queue is the cluster's queue of runs (required).
	Queue Queue
	// SealLog ends, where it stands, the log of a run that ends here but
	// did not run here (its runner died, or it never started), and
	// returns its size and lines (engine.SealLog).
	SealLog func(ctx context.Context, id int64) (size, lines int64, err error)
	// Zone is the zone whose runs this runner runs; "" for none (a
	// replica that only serves pages).
	Zone string
	// Node names this process in the records of the runs it runs; stable
	// across restarts, so that it settles its own runs after one.
	Node string
	// Lease is how long the queue's lease on a run lasts without renewal
	// (the engine's; renewed every fifth of it).
	Lease time.Duration
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
	queue   []*task         // taken from the queue, not started yet; oldest first
	active  map[int64]*task // queued or running
	locks   map[string]int64
	running int
	closed  bool
	wake    chan struct{}
	roomed  chan struct{} // this runner may have room for another run
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
	ended     State // how it ended, once finish has begun; under Runner.mu
	reasonMsg string
	grace     time.Duration // if set, caps the kill grace (set before stop is closed)
	lw        *logWriter
	// groupsSkipped counts open groups past maxGroups, so that their
	// endgroups close none of those recorded.
	groupsSkipped int
	out           *os.File // what the runner reads the job's output from
	// While a gate is open: who waits for its answer, and its timeout.
	gateDecided chan<- Gate
	gateTimer   *time.Timer
	persistMu   sync.Mutex    // orders store writes of this run
	sealed      bool          // the final record is stored: no other write may follow; under persistMu
	persisted   time.Time     // under Runner.mu
	flushing    bool          // a store write of the latest progress is due; under Runner.mu
	changed     chan struct{} // closed at the run's next change; nil until watched
	lease       Lease         // the queue's lease on the run; under Runner.mu
	dispatched  bool          // it has a slot and is starting or running; under Runner.mu
	watchdog    *watchdog     // the job's, while it runs; under Runner.mu
	done        chan struct{} // closed once the run is settled: its lease needs no renewal
}

// NewRunner returns a runner for the jobs in cfg, recording runs in store.
func NewRunner(cfg *Config, store *Store, opts RunnerOptions) *Runner {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.KillGrace == 0 {
		opts.KillGrace = 5 * time.Second
	}
	if opts.Lease == 0 {
		opts.Lease = 10 * time.Second
	}
	return &Runner{
		cfg: cfg, store: store, opts: opts, log: opts.Logger,
		active: map[int64]*task{}, locks: map[string]int64{},
		wake: make(chan struct{}, 1), roomed: make(chan struct{}, 1),
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

// Run takes the runs of its zone from the queue and runs them until ctx
// ends, then lets running runs finish for ShutdownGrace before stopping
// them. The runs it took and had not started go back to the queue.
func (r *Runner) Run(ctx context.Context) error {
	if r.opts.Zone == "" {
		<-ctx.Done()
		return nil
	}
	// Taking stops when ctx ends, before the shutdown; not with ctx, so
	// that nothing is taken while it does.
	taking, stopTaking := context.WithCancel(context.WithoutCancel(ctx))
	took := make(chan error, 1)
	go func() {
		took <- r.opts.Queue.Take(taking, r.opts.Zone, r.room, r.roomed, r.take)
	}()
	defer stopTaking()
	for {
		select {
		case err := <-took:
			r.shutdown()
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("take runs of zone %s: %w", r.opts.Zone, err)
			}
			return nil
		case <-ctx.Done():
			stopTaking()
			if err := <-took; err != nil {
				r.log.Warn("stop taking runs", "err", err)
			}
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
	waiting := r.queue
	r.queue = nil
	for _, t := range waiting {
		delete(r.active, t.run.ID)
	}
	r.mu.Unlock()
	for _, t := range waiting {
		close(t.done)
		if err := t.lease.Release(); err != nil {
			r.log.Warn("give a queued run back to the queue", "run_id", t.run.ID, "err", err)
		}
	}
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

// Get returns a snapshot of run id; a queued one says what it waits for.
func (r *Runner) Get(ctx context.Context, id int64) (*Run, error) {
	run, err := r.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return run, r.fillWaits(ctx, run)
}

// Latest returns run id as the engine has it now. This node's copy of
// the records may be a moment behind a change made on another: a script
// that saw a run finish through one replica and reads its log through
// another must find it finished there too.
func (r *Runner) Latest(ctx context.Context, id int64) (*Run, error) {
	r.mu.Lock()
	t, mine := r.active[id]
	var snap *Run
	if mine {
		snap = t.run.clone()
	}
	r.mu.Unlock()
	if mine {
		return snap, nil
	}
	return r.store.Latest(ctx, id)
}

func (r *Runner) get(ctx context.Context, id int64) (*Run, error) {
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
// Triggerers returns who triggered runs, most recent first (at most limit).
func (r *Runner) Triggerers(ctx context.Context, limit int) ([]string, error) {
	return r.store.Triggerers(ctx, limit)
}

func (r *Runner) List(ctx context.Context, f Filter) ([]*Run, error) {
	runs, err := r.store.List(ctx, f)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	for i, run := range runs {
		if t, ok := r.active[run.ID]; ok {
			runs[i] = t.run.clone()
		}
	}
	r.mu.Unlock()
	// A live run that has changed state since the query may no longer match.
	runs = slices.DeleteFunc(runs, func(run *Run) bool {
		return len(f.States) > 0 && !slices.Contains(f.States, run.State)
	})
	return runs, r.fillWaits(ctx, runs...)
}

// Environments returns every environment a job names (the choices of its
// deploys.environment parameter) or a run deployed to, in order of name.
func (r *Runner) Environments(ctx context.Context) ([]string, error) {
	seen, err := r.store.Environments(ctx)
	if err != nil {
		return nil, err
	}
	for _, j := range r.cfg.Jobs {
		seen = append(seen, j.Environments()...)
	}
	slices.Sort(seen)
	return slices.Compact(seen), nil
}

// CountByState returns how many runs are in each state.
func (r *Runner) CountByState(ctx context.Context) (map[State]int, error) {
	return r.store.CountByState(ctx)
}

// Watch returns a channel closed at the next change of run id's state,
// progress or annotations, made here or, for a run that is not running
// here, anywhere. Read the run after calling Watch, and do not wait for a
// finished one: its channel may never close. The channel belongs to the
// run, so watching costs nothing more however many ask.
func (r *Runner) Watch(id int64) <-chan struct{} {
	r.mu.Lock()
	if t, ok := r.active[id]; ok && t.run.State == Running {
		if t.changed == nil {
			t.changed = make(chan struct{})
		}
		ch := t.changed
		r.mu.Unlock()
		return ch
	}
	r.mu.Unlock()
	// Queued (its wait follows from other runs), run elsewhere, or
	// finished: the records say when it changes.
	return r.store.Watch(id)
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

// persist stores snap unless the run's final record is stored already.
func (r *Runner) persist(t *task, snap *Run) {
	t.persistMu.Lock()
	defer t.persistMu.Unlock()
	if t.sealed {
		return
	}
	if err := r.store.Update(context.Background(), snap); err != nil {
		r.log.Error("store run", "run_id", snap.ID, "err", err)
	}
	r.mu.Lock()
	t.persisted = time.Now()
	r.mu.Unlock()
}

// persistFirst changes run t durably before visibly: it stores the record
// with apply made, then makes apply (and then, for t's own fields) in
// memory and wakes t's watchers, so no reader sees the change before it is
// stored; no other write of the record comes in between. check says why
// the change cannot be made, if it cannot; it is asked under r.mu before
// the write and again before the change is shown.
func (r *Runner) persistFirst(t *task, check func() error, apply func(run *Run), then func()) error {
	t.persistMu.Lock()
	defer t.persistMu.Unlock()
	r.mu.Lock()
	if err := check(); err != nil {
		r.mu.Unlock()
		return err
	}
	snap := t.run.clone()
	apply(snap)
	r.mu.Unlock()
	if t.sealed {
		return fmt.Errorf("%w: the run is ending", ErrFinished)
	}
	if err := r.store.Update(context.Background(), snap); err != nil {
		return fmt.Errorf("store run %d: %w", snap.ID, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := check(); err != nil {
		return err
	}
	apply(t.run)
	then()
	t.persisted = time.Now()
	r.notify(t)
	return nil
}

// persistLatest stores the run as it is when its turn to write comes,
// unless its final record is stored already.
func (r *Runner) persistLatest(t *task) {
	t.persistMu.Lock()
	defer t.persistMu.Unlock()
	if t.sealed {
		return
	}
	r.mu.Lock()
	snap := t.run.clone()
	r.mu.Unlock()
	if err := r.store.Update(context.Background(), snap); err != nil {
		r.log.Error("store run", "run_id", snap.ID, "err", err)
	}
	r.mu.Lock()
	t.persisted = time.Now()
	r.mu.Unlock()
}

// persistSoon has the run's latest state stored at most once a second:
// it returns a snapshot for the caller to persist at once, after letting
// go of r.mu, if the last write is that old; else the write happens when
// it is. Replicas show what the store holds. r.mu must be held.
func (r *Runner) persistSoon(t *task) *Run {
	since := time.Since(t.persisted)
	if since > time.Second {
		t.persisted = time.Now() // and again once written
		return t.run.clone()
	}
	if t.flushing {
		return nil
	}
	t.flushing = true
	time.AfterFunc(time.Second-since, func() {
		r.mu.Lock()
		t.flushing = false
		r.mu.Unlock()
		r.persistLatest(t)
	})
	return nil
}

// RunsJob reports whether this runner may run the named job: it runs the
// job's zone.
func (r *Runner) RunsJob(name string) bool {
	j, err := r.cfg.Job(name)
	return err == nil && r.opts.Zone != "" && j.Zone == r.opts.Zone
}
