package jobs

import (
	"context"
	"errors"
	"os"

	"github.com/shiplog/shiplog/logfile"
)

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
		r.RemoveLog(id)
	}
	if len(ids) > 0 && r.opts.OnPruned != nil {
		r.opts.OnPruned(ids)
	}
}

// RemoveLog removes run id's log and its sidecars: the run was pruned,
// here or, for a replica's copy, by the node that ran it.
func (r *Runner) RemoveLog(id int64) {
	if err := os.Remove(r.LogPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Error("remove pruned log", "run_id", id, "err", err)
	}
	for _, side := range logfile.Sidecars(r.LogPath(id)) {
		_ = os.Remove(side)
	}
}
