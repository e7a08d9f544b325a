package jobs

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/shiplog/shiplog/logfile"
)

// Recover settles runs a previous process left unfinished: a run whose
// final record waits beside its log gets it; other running ones become
// interrupted (any process they left is killed); queued ones are queued
// again. What the process held of a last unfinished line goes into the log.
// Call it before Run.
func (r *Runner) Recover(ctx context.Context) error {
	if r.opts.Remote != nil {
		return nil // the node that runs jobs settles them
	}
	runs, err := r.store.List(ctx, Filter{States: []State{Queued, Running}})
	if err != nil {
		return err
	}
	slices.Reverse(runs) // oldest first, to keep queue order
	for _, run := range runs {
		if done, ok := readFinal(logfile.FinalPath(r.LogPath(run.ID)), run.ID); ok {
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
	size, lines, _ = logfile.Count(f)
	return size, lines
}
