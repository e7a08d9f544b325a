package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

func (r *Runner) kick() {
	select {
	case r.wake <- struct{}{}:
	default: // a wake-up is already pending; it will see this change too
	}
}

// makeRoom tells the queue that this runner may have room for another run.
func (r *Runner) makeRoom() {
	select {
	case r.roomed <- struct{}{}:
	default:
	}
}

// room reports whether this runner takes another run without a lock: it
// takes none it cannot start at once, so that another runner may.
func (r *Runner) room() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.closed && r.running+len(r.queue) < r.cfg.MaxConcurrentRuns
}

// take receives a run from the queue: a queued one joins this runner's
// line; one the queue hands out again because its runner stopped renewing
// the lease is marked interrupted.
func (r *Runner) take(l Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := l.RunID()
	run, err := r.store.Fresh(ctx, id)
	if errors.Is(err, ErrNotFound) {
		_ = l.Done(ctx) // pruned, or never recorded: nothing to run
		return
	}
	if err != nil {
		r.log.Error("read a run taken from the queue; it goes back", "run_id", id, "err", err)
		_ = l.Release()
		return
	}
	r.mu.Lock()
	t, mine := r.active[id]
	closed := r.closed
	r.mu.Unlock()
	switch {
	case mine:
		// Ours still: the lease lapsed while the engine was out of reach,
		// and this is the same run handed out again. Its new delivery is
		// the one to renew and settle.
		r.mu.Lock()
		t.lease = l
		r.mu.Unlock()
		return
	case run.State.Finished():
		_ = l.Done(ctx) // canceled while queued
		return
	case run.State == Running:
		if !l.Redelivered() {
			_ = l.Done(ctx) // an enqueue retried after the run started
			return
		}
		t := &task{run: run, lease: l}
		r.finish(t, outcome{state: Interrupted, msg: fmt.Sprintf("its runner (%s) stopped renewing its lease", cmp.Or(run.Node, "unknown"))}, false)
		return
	case closed:
		_ = l.Release()
		return
	}
	job, err := r.cfg.Job(run.Job)
	if err == nil {
		_, err = job.ValidateParams(run.Params)
	}
	if err != nil {
		r.finish(&task{run: run, lease: l}, outcome{state: Failed, msg: fmt.Sprintf("not started by %s: %v", r.opts.Node, err)}, false)
		return
	}
	t = &task{run: run, job: job, lock: job.LockName(run.Params), stop: make(chan struct{}), lease: l, done: make(chan struct{})}
	r.mu.Lock()
	r.active[id] = t
	i, _ := slices.BinarySearchFunc(r.queue, id, func(q *task, id int64) int { return cmp.Compare(q.run.ID, id) })
	r.queue = slices.Insert(r.queue, i, t)
	r.mu.Unlock()
	go r.renew(t, id)
	r.kick()
}

// renew keeps t's lease until t is done, renewing it every fifth of its
// term. A run whose lease could not be renewed twice running is stopped,
// with a kill grace of a fifth of the term at most: it has ended before
// the lease lapses and another runner may start the next run of its lock.
func (r *Runner) renew(t *task, id int64) {
	every := r.opts.Lease / 5
	tick := time.NewTicker(every)
	defer tick.Stop()
	renewed := time.Now()
	for {
		select {
		case <-t.done:
			return
		case now := <-tick.C:
			r.mu.Lock()
			l := t.lease
			r.mu.Unlock()
			err := l.Renew()
			if err == nil {
				renewed = now
				r.mu.Lock()
				wd := t.watchdog
				r.mu.Unlock()
				if wd != nil {
					wd.beat()
				}
				continue
			}
			r.log.Warn("renew the lease on a run", "run_id", id, "err", err)
			if lost := now.Sub(renewed); lost >= 2*every-every/4 {
				t.haltWithin(every, Interrupted, fmt.Sprintf("its lease could not be renewed for %s (the engine could not be reached): stopped so that no other run of its lock overlaps it", lost.Round(time.Second)))
			}
		}
	}
}

// dispatch starts every run of this runner's line that may start now,
// oldest first; a run waiting for its lock does not hold back the runs
// behind it.
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
		t.dispatched = true
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
	run := &Run{Job: job.Name, Params: vals, State: Queued, TriggeredBy: by, RerunOf: rerunOf, QueuedAt: recordTime(), Lock: job.LockName(vals)}
	run.Environment, run.Version = job.Deployment(vals)
	if err := r.store.Insert(ctx, run); err != nil {
		return nil, noSpace(err)
	}
	if err := r.opts.Queue.Enqueue(ctx, job.Zone, run.Lock, run.ID); err != nil {
		// Recorded as failed, so the history says what happened.
		r.finish(&task{run: run}, outcome{state: Failed, msg: fmt.Sprintf("queue: %v", err)}, false) //nolint:contextcheck // the failure is stored even if the request goes away
		return nil, noSpace(fmt.Errorf("queue: %w", err))
	}
	r.log.Info("run queued", "run_id", run.ID, "job", job.Name, "zone", job.Zone, "by", by)
	return run.clone(), nil
}

// Cancel stops run id for by (who asked), wherever it runs: a queued run
// never starts, a running one is terminated with its whole process group.
// The run's error and the end of its log say who canceled it.
func (r *Runner) Cancel(ctx context.Context, id int64, by string) error {
	why := "canceled by " + by
	r.mu.Lock()
	t, ok := r.active[id]
	if !ok {
		r.mu.Unlock()
		return r.cancelElsewhere(ctx, id, by)
	}
	if t.run.State == Queued && !t.dispatched {
		r.queue = slices.DeleteFunc(r.queue, func(q *task) bool { return q == t })
		t.run.State = Canceled // at once, so a second cancel finds it finished
		r.mu.Unlock()
		r.finish(t, outcome{state: Canceled, msg: why}, false) //nolint:contextcheck // the cancel is stored even if its request goes away
		r.kick()
		return nil
	}
	if t.run.State.Finished() || t.ended != "" {
		// Finishing: its final record may be out already.
		state := cmp.Or(t.ended, t.run.State)
		r.mu.Unlock()
		return fmt.Errorf("%w: #%d is %s", ErrFinished, id, state)
	}
	t.halt(Canceled, why)
	r.mu.Unlock()
	return nil
}

// cancelElsewhere cancels a run this runner does not hold: a queued one
// by writing its final record (which fails, and is tried again, if a
// runner took it in between), a running one through the node running it.
func (r *Runner) cancelElsewhere(ctx context.Context, id int64, by string) error {
	for range 5 {
		run, err := r.store.Fresh(ctx, id)
		if err != nil {
			return err
		}
		switch run.State {
		case Queued:
			final(run, outcome{state: Canceled, msg: "canceled by " + by}, recordTime())
			err := r.store.Update(ctx, run)
			if stale(err) {
				continue // taken or changed meanwhile: look again
			}
			if err != nil {
				return noSpace(err)
			}
			// No runner starts it now (its start would be refused as
			// stale): its empty log can end.
			r.sealElsewhere(ctx, run)
			r.log.Info("run finished", "run_id", run.ID, "job", run.Job, "state", Canceled)
			r.observe(run, false)
			return nil
		case Running:
			return r.cancelThere(ctx, run, by)
		default:
			return fmt.Errorf("%w: #%d is %s", ErrFinished, run.ID, run.State)
		}
	}
	return fmt.Errorf("cancel #%d: its record keeps changing; try again", id)
}

func (t *task) halt(reason State, msg string) { t.haltWithin(0, reason, msg) }

// haltWithin stops t, killing what is left of it grace after asking it
// to stop (or the runner's KillGrace, if shorter or grace is 0).
func (t *task) haltWithin(grace time.Duration, reason State, msg string) {
	t.stopOnce.Do(func() {
		t.reason, t.reasonMsg, t.grace = reason, msg, grace
		close(t.stop)
	})
}
