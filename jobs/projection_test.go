package jobs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// follow runs s.Follow until the test ends, and returns the ids it was
// told were removed, as they come.
func follow(t *testing.T, s *Store) <-chan int64 {
	t.Helper()
	removed := make(chan int64, 100)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		s.Follow(ctx, func(id int64) { removed <- id }, func(err error) { t.Errorf("follow: %v", err) })
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return removed
}

// waitClosed waits for ch, failing the test after the deadline.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	if ch == nil {
		t.Fatalf("%s: no channel to wait on", what)
	}
	select {
	case <-ch:
	case <-time.After(deadline):
		t.Fatalf("%s: not woken", what)
	}
}

// waitStored waits, on s's change notifications, until s's database has
// run id and cond holds for it.
func waitStored(t *testing.T, s *Store, id int64, cond func(*Run) bool) {
	t.Helper()
	for {
		next := s.Watch(id)
		run, err := scanRun(s.db.QueryRowContext(t.Context(), `SELECT `+runColumns+` FROM runs WHERE id=?`, id))
		if err == nil && cond(run) {
			return
		}
		waitClosed(t, next, "a change")
	}
}

// A store following the records (a replica) takes in every change made
// through another as it happens: new runs, each update (waking whoever
// watches the run), and removals.
func TestStoreFollowsChangesMadeElsewhere(t *testing.T) {
	recs := startEngine(t).Records()
	a, b := openStore(t, "", recs), openStore(t, "", recs)
	removed := follow(t, b)

	run := queuedRun("deploy")
	if err := a.Insert(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	// Seen by b's database, not only by its fallback to the records, and
	// watched there.
	waitStored(t, b, run.ID, func(r *Run) bool { return r.State == Queued })
	run.State, run.Progress = Running, &Progress{Percent: 40, Message: "migrating"}
	if err := a.Update(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	waitStored(t, b, run.ID, func(r *Run) bool { return r.Progress != nil && r.Progress.Percent == 40 })

	now := time.UnixMilli(time.Now().UnixMilli())
	run.State, run.FinishedAt = Succeeded, &now
	if err := a.Update(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	waitStored(t, b, run.ID, finished)
	if ids, err := a.Prune(t.Context(), "deploy", 0); err != nil || len(ids) != 1 {
		t.Fatalf("prune: %v %v", ids, err)
	}
	select {
	case id := <-removed:
		if id != run.ID {
			t.Fatalf("removed #%d, want #%d", id, run.ID)
		}
	case <-time.After(deadline):
		t.Fatal("the removal never reached b")
	}
	if _, err := b.Get(t.Context(), run.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("b still has the pruned run: %v", err)
	}
}

// The final record is the last write of a run: progress printed just
// before the end, whose write is put off by the once-a-second limit, does
// not land after it and undo it.
func TestNothingIsStoredAfterTheFinalRecord(t *testing.T) {
	cfg := mustParse(t, `
jobs:
  quick:
    run: |
      echo "::progress::10 one"
      echo "::progress::20 two"
`)
	n := testNode(t, t.TempDir(), nil, cfg, RunnerOptions{})
	r, recs := n.runner, n.eng.Records()
	var err error

	replica := openStore(t, "", recs)
	follow(t, replica)
	run := trigger(t, r, "quick", nil)
	waitRun(t, r, run.ID, finished)
	var final *Run
	for final == nil || !final.State.Finished() {
		ch := replica.Watch(run.ID)
		if final, err = replica.Get(t.Context(), run.ID); err != nil {
			t.Fatal(err)
		}
		if !final.State.Finished() {
			waitClosed(t, ch, "the final record")
		}
	}
	// A put-off write comes within a second of the last one; give it
	// three.
	select {
	case <-replica.Watch(run.ID):
		late, _ := replica.Get(t.Context(), run.ID)
		t.Fatalf("the record changed after the final one: now %s, progress %+v", late.State, late.Progress)
	case <-time.After(3 * time.Second):
	}
	if final.State != Succeeded || final.Progress == nil || final.Progress.Percent != 20 {
		t.Fatalf("final record %s, progress %+v", final.State, final.Progress)
	}
}
