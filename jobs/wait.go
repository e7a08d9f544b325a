package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// A queued run's wait is read, not stored: its place in its zone's line
// and the holder of its lock follow from the unfinished runs' records,
// which every node has, so every replica says the same.

// fillWaits sets what each queued run in runs waits for.
func (r *Runner) fillWaits(ctx context.Context, runs ...*Run) error {
	queued := false
	for _, run := range runs {
		run.Wait = nil
		queued = queued || run.State == Queued
	}
	if !queued {
		return nil
	}
	line, err := r.store.unfinished(ctx)
	if err != nil {
		return err
	}
	zone := func(job string) string {
		if j, err := r.cfg.Job(job); err == nil {
			return j.Zone
		}
		return ""
	}
	for _, run := range runs {
		if run.State != Queued {
			continue
		}
		w, z := &Wait{Position: 1}, zone(run.Job)
		for _, o := range line {
			if o.ID == run.ID || zone(o.Job) != z {
				continue
			}
			switch {
			case o.State == Queued && o.ID < run.ID:
				w.Position++
			case o.State == Running && run.Lock != "" && o.Lock == run.Lock:
				w.Lock, w.Holder, w.HolderBy, w.HolderSince = o.Lock, o.ID, o.TriggeredBy, o.StartedAt
			}
		}
		run.Wait = w
	}
	return nil
}

// unfinished returns the queued and running runs, oldest first, with the
// fields that say who waits for whom.
func (s *Store) unfinished(ctx context.Context) ([]*Run, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, job, state, lock, triggered_by, started_at FROM runs WHERE state IN (?, ?) ORDER BY id`, Queued, Running)
	if err != nil {
		return nil, fmt.Errorf("list unfinished runs: %w", err)
	}
	defer rows.Close()
	var out []*Run
	for rows.Next() {
		var (
			run     Run
			started sql.NullInt64
		)
		if err := rows.Scan(&run.ID, &run.Job, &run.State, &run.Lock, &run.TriggeredBy, &started); err != nil {
			return nil, fmt.Errorf("list unfinished runs: %w", err)
		}
		if started.Valid {
			t := time.UnixMilli(started.Int64)
			run.StartedAt = &t
		}
		out = append(out, &run)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list unfinished runs: %w", err)
	}
	return out, nil
}

// QueueLength is the number of runs waiting to start, in every zone.
func (r *Runner) QueueLength(ctx context.Context) int {
	var n int
	_ = r.store.db.QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE state = ?`, Queued).Scan(&n)
	return n
}
