package jobs

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/shiplog/shiplog/logfile"
)

// outcome is how a run ended.
type outcome struct {
	state State
	exit  *int
	msg   string
}

// Beside each log, while it matters:
//   - ID.log.final holds a run's final record from the moment it ends until
//     the database has it, so a restart never calls a finished run
//     interrupted because a database write failed;
//   - ID.log.partial holds the bytes after the log's last newline, masked,
//     so kill -9 of the server loses none of them (see logWriter).

// storeAttempts and storeBackoff bound the retries of a run's final write:
// about three seconds in all, then the record waits in ID.log.final for the
// next start.
const (
	storeAttempts = 6
	storeBackoff  = 100 * time.Millisecond
)

// finish ends run t. It is the one path every run takes to its end:
// completion, timeout, cancel (queued or running), shutdown and recovery
// after a crash. held says whether t holds a slot and its lock. The record
// is made durable first; then the slot and lock go, watchers wake and the
// next runs start; observers are called last, in the background.
func (r *Runner) finish(t *task, o outcome, held bool) {
	now := recordTime()
	r.mu.Lock()
	snap := t.run.clone()
	t.ended = o.state
	decided, timer := t.gateDecided, t.gateTimer
	t.gateDecided, t.gateTimer = nil, nil
	r.mu.Unlock()
	// The final record is shown to no one before it is durable: a reader
	// who sees the run finished finds it so in the store too.
	final(snap, o, now)
	if timer != nil {
		timer.Stop()
	}
	if decided != nil && len(snap.Gates) > 0 {
		decided <- snap.Gates[len(snap.Gates)-1] // the gate the run ended at
	}
	if snap.StartedAt == nil && held {
		snap.StartedAt = &now
	}
	local := t.lw != nil || snap.Node == r.opts.Node
	switch {
	case t.lw != nil:
		snap.LogBytes, snap.LogLines = t.lw.Counts()
		snap.LogCut = t.lw.Cut()
	case local:
		snap.LogBytes, snap.LogLines = countLog(r.LogPath(snap.ID))
	default:
		r.sealElsewhere(context.Background(), snap)
	}

	ours := r.storeFinal(t, snap)
	r.mu.Lock()
	lease := t.lease
	r.mu.Unlock()
	if lease != nil {
		// The run is off the queue, and the next of its lock may start,
		// only once its final record is durable.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := lease.Done(ctx); err != nil && ours {
			r.log.Warn("take a finished run off the queue", "run_id", snap.ID, "err", err)
		}
		cancel()
	}
	if t.done != nil {
		close(t.done)
	}
	r.prune(snap.Job)

	r.mu.Lock()
	*t.run = *snap.clone()
	if held {
		r.running--
		if t.lock != "" && r.locks[t.lock] == snap.ID {
			delete(r.locks, t.lock)
		}
	}
	delete(r.active, snap.ID)
	r.remember(snap)
	r.notify(t)
	r.mu.Unlock()
	r.kick()
	r.makeRoom()

	r.log.Info("run finished", "run_id", snap.ID, "job", snap.Job, "state", snap.State,
		"exit_code", exitValue(snap.ExitCode), "duration", snap.Duration(now).Round(time.Millisecond))
	r.observe(snap, local)
}

// sealElsewhere ends the log of a run that did not run here, which no
// runner will end, and takes its size from it.
func (r *Runner) sealElsewhere(ctx context.Context, run *Run) {
	if r.opts.SealLog == nil {
		return
	}
	// Once the run has ended, its log must end too, whoever asked.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	size, lines, err := r.opts.SealLog(ctx, run.ID)
	if err != nil {
		r.log.Error("end the log of a run that ran elsewhere", "run_id", run.ID, "err", err)
		return
	}
	run.LogBytes, run.LogLines = size, lines
}

// final makes run its final record for outcome o at now.
func final(run *Run, o outcome, now time.Time) {
	run.State, run.ExitCode, run.Error, run.FinishedAt, run.PID = o.state, o.exit, o.msg, &now, 0
	endGates(run, now)
}

// observe tells the observers (streams ending, metrics; webhooks to come)
// that run finished, in the background: they never hold up the runner.
// OnLogClosed is told only of logs written here (local).
func (r *Runner) observe(run *Run, local bool) {
	snap := run.clone()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if r.opts.OnLogClosed != nil && local {
			r.opts.OnLogClosed(snap.ID, snap.LogBytes)
		}
		if r.opts.OnFinish != nil {
			r.opts.OnFinish(snap)
		}
	}()
}

// remember keeps a finished run at hand; r.mu must be held.
func (r *Runner) remember(snap *Run) {
	r.recent[snap.ID] = snap.clone()
	r.recentFIFO = append(r.recentFIFO, snap.ID)
	if len(r.recentFIFO) > keepRecent {
		delete(r.recent, r.recentFIFO[0])
		r.recentFIFO = r.recentFIFO[1:]
	}
}

// storeFinal makes a run's final record durable: beside its log first, then
// in the database, retried; the file goes once the database has it. It
// reports false if the record had moved on: another node settled the run
// (its runner's lease lapsed), and this late write is refused.
func (r *Runner) storeFinal(t *task, snap *Run) bool {
	path := logfile.FinalPath(r.LogPath(snap.ID))
	if err := writeFinal(path, snap); err != nil {
		r.log.Error("keep final record beside the log", "run_id", snap.ID, "err", err)
	}
	t.persistMu.Lock()
	defer t.persistMu.Unlock()
	t.sealed = true
	var err error
	for i := range storeAttempts {
		if err = r.store.Update(context.Background(), snap); err == nil {
			_ = os.Remove(path)
			return true
		}
		if stale(err) {
			_ = os.Remove(path)
			r.log.Error("the run was settled elsewhere while this node ran it (its lease lapsed); its final record here is dropped", "run_id", snap.ID, "state", snap.State)
			return false
		}
		if i < storeAttempts-1 {
			time.Sleep(storeBackoff << i) // backoff between attempts, not synchronisation
		}
	}
	r.log.Error("store final run record; it waits beside the log for the next start", "run_id", snap.ID, "err", err)
	return true
}

func writeFinal(path string, run *Run) error {
	data, err := encodeRecord(run)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readFinal reads a final record kept beside a log; ok is false when there
// is none (or it is damaged: the run is then interrupted, as before).
func readFinal(path string, id int64) (*Run, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	run, err := decodeRecord(data)
	if err != nil || run.ID != id || !run.State.Finished() {
		return nil, false
	}
	return run, true
}

// keepPartial appends what a killed server held of a run's unfinished last
// line (ID.log.partial) to its log, as the log's last line.
func keepPartial(logPath string) error {
	part, err := os.ReadFile(logfile.PartialPath(logPath))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(part) > 0 {
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		if _, err := f.Write(append(part, '\n')); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return os.Remove(logfile.PartialPath(logPath))
}
