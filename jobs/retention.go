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
		if err := os.Remove(r.LogPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Error("remove pruned log", "run_id", id, "err", err)
		}
		for _, side := range logfile.Sidecars(r.LogPath(id)) {
			_ = os.Remove(side)
		}
	}
	if len(ids) > 0 && r.opts.OnPruned != nil {
		r.opts.OnPruned(ids)
	}
}
