package jobs

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
)

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
		t.run.Wait = nil
		r.running++
		r.wg.Add(1)
		go r.execute(t)
	}
	r.explainWaits()
}

// explainWaits tells each queued run what it waits for, and stores it
// where it changed, so that every replica can say why a run has not
// started. r.mu must be held.
func (r *Runner) explainWaits() {
	for i, t := range r.queue {
		w := &Wait{Position: i + 1}
		if holder, held := r.locks[t.lock]; t.lock != "" && held {
			w.Lock, w.Holder = t.lock, holder
			if h := r.active[holder]; h != nil {
				w.HolderBy, w.HolderSince = h.run.TriggeredBy, h.run.StartedAt
			}
		}
		if w.same(t.run.Wait) {
			continue
		}
		t.run.Wait = w
		r.notify(t)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.persistLatest(t)
		}()
	}
}

// Trigger validates params and queues a run of the named job.
func (r *Runner) Trigger(ctx context.Context, jobName string, params map[string]string, by string) (*Run, error) {
	if r.opts.Remote != nil {
		return r.ask(ctx, action{Op: "trigger", Job: jobName, Params: params, By: by})
	}
	return r.trigger(ctx, jobName, params, by, 0)
}

// Rerun queues a new run with the job and params of run id.
func (r *Runner) Rerun(ctx context.Context, id int64, by string) (*Run, error) {
	if r.opts.Remote != nil {
		return r.ask(ctx, action{Op: "rerun", ID: id, By: by})
	}
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
	run := &Run{Job: job.Name, Params: vals, State: Queued, TriggeredBy: by, RerunOf: rerunOf, QueuedAt: recordTime()}
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

// QueueLength is the number of runs waiting to start.
func (r *Runner) QueueLength() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// Cancel stops run id for by (who asked): a queued run never starts, a
// running one is terminated with its whole process group. The run's error
// and the end of its log say who canceled it.
func (r *Runner) Cancel(ctx context.Context, id int64, by string) error {
	if r.opts.Remote != nil {
		_, err := r.ask(ctx, action{Op: "cancel", ID: id, By: by})
		return err
	}
	why := "canceled by " + by
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
		r.finish(t, outcome{state: Canceled, msg: why}, false) //nolint:contextcheck // the cancel is stored even if its request goes away
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

func (t *task) halt(reason State, msg string) {
	t.stopOnce.Do(func() {
		t.reason, t.reasonMsg = reason, msg
		close(t.stop)
	})
}
