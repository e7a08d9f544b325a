package jobs

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/shiplog/shiplog/logfile"
)

// Recover settles the runs this node left unfinished when it stopped: a
// run whose final record waits beside its log gets it; other running ones
// become interrupted (any process they left is killed), and what the
// process held of a last unfinished line goes into the log. Queued runs
// wait in the engine's queue; those queued before the queue was there
// (requeue) are put in it. Call it before Run.
func (r *Runner) Recover(ctx context.Context, requeue bool) error {
	if r.opts.Zone == "" {
		return nil // a node that runs nothing has nothing to settle
	}
	runs, err := r.store.List(ctx, Filter{States: []State{Queued, Running}})
	if err != nil {
		return err
	}
	slices.Reverse(runs) // oldest first, to keep queue order
	for _, run := range runs {
		if run.State == Running && (run.Node == r.opts.Node || run.Node == "") {
			r.settleLeftover(run) //nolint:contextcheck // see finish
			continue
		}
		if run.State != Queued || !requeue {
			continue
		}
		job, err := r.cfg.Job(run.Job)
		if err == nil {
			_, err = job.ValidateParams(run.Params)
		}
		if err == nil {
			err = r.opts.Queue.Enqueue(ctx, job.Zone, job.LockName(run.Params), run.ID)
		}
		if err != nil {
			r.finish(&task{run: run}, outcome{state: Interrupted, msg: fmt.Sprintf("not started after a restart: %v", err)}, false) //nolint:contextcheck // see finish
		}
	}
	return nil
}

// settleLeftover ends a run this node was running when it stopped.
func (r *Runner) settleLeftover(run *Run) {
	if done, ok := readFinal(logfile.FinalPath(r.LogPath(run.ID)), run.ID); ok {
		r.log.Warn("run finished before the last stop, but its record had not reached the database: restored", "run_id", run.ID, "state", done.State)
		r.storeFinal(&task{run: done}, done)
		return
	}
	if n := killLeftovers(run.ID, run.PID); n > 0 {
		r.log.Warn("killed processes left by an interrupted run", "run_id", run.ID, "processes", n)
	}
	if err := keepPartial(r.LogPath(run.ID)); err != nil {
		r.log.Error("keep the unfinished last line", "run_id", run.ID, "err", err)
	}
	r.finish(&task{run: run}, outcome{state: Interrupted, msg: "the server stopped while this run was running"}, false)
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
