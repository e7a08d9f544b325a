package jobs

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shiplog/shiplog/engine"
)

// startEngine starts an embedded engine for the test.
func startEngine(t *testing.T) *engine.Engine {
	t.Helper()
	eng, err := engine.Start(t.Context(), engine.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

// openStore opens a store on a database of its own, as a replica does.
func openStore(t *testing.T, path string, recs Records) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "shiplog.db")
	}
	s, err := OpenStore(t.Context(), path, recs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func queuedRun(job string) *Run {
	return &Run{Job: job, Params: map[string]string{"target": "eu"}, State: Queued, QueuedAt: time.UnixMilli(time.Now().UnixMilli()), TriggeredBy: "ana"}
}

func allRuns(t *testing.T, s *Store) []*Run {
	t.Helper()
	runs, err := s.List(t.Context(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

// Stores that share the engine (replicas) hand out unique ids, and each
// trigger's id is greater than the one before it, under concurrent
// inserts through both.
func TestStoresShareRunIDs(t *testing.T) {
	recs := startEngine(t).Records()
	stores := []*Store{openStore(t, "", recs), openStore(t, "", recs)}
	var (
		mu  sync.Mutex
		ids []int64
		wg  sync.WaitGroup
	)
	for g := range 4 {
		wg.Go(func() {
			var last int64
			for i := range 10 {
				r := queuedRun("deploy")
				if err := stores[(g+i)%2].Insert(t.Context(), r); err != nil {
					t.Error(err)
					return
				}
				if r.ID <= last {
					t.Errorf("id %d after %d", r.ID, last)
				}
				last = r.ID
				mu.Lock()
				ids = append(ids, r.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(ids)
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("ids %v: want 1 to 40, each once", ids)
		}
	}
}

// A store opened on an empty database (a new replica) shows the whole
// history, field for field, and what was pruned through another is gone.
func TestStoreRebuildsFromRecords(t *testing.T) {
	recs := startEngine(t).Records()
	a := openStore(t, "", recs)
	for range 3 {
		if err := a.Insert(t.Context(), queuedRun("deploy")); err != nil {
			t.Fatal(err)
		}
	}
	run, err := a.Get(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	started, finished := run.QueuedAt.Add(time.Second), run.QueuedAt.Add(3*time.Second)
	exit := 1
	run.State, run.StartedAt, run.FinishedAt, run.ExitCode = Failed, &started, &finished, &exit
	run.Error, run.Progress = "", &Progress{Percent: 40, Message: "migrating"}
	run.Annotations = []Annotation{{Level: "error", Message: "disk full", Title: "db", Line: 12}}
	run.LogBytes, run.LogLines, run.LogCut = 4096, 12, true
	if err := a.Update(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	queued, err := a.Get(t.Context(), 3)
	if err != nil {
		t.Fatal(err)
	}
	queued.Lock, queued.Node = "deploy-eu", "runner-1"
	if err := a.Update(t.Context(), queued); err != nil {
		t.Fatal(err)
	}
	b := openStore(t, "", recs)
	if got, want := allRuns(t, b), allRuns(t, a); !reflect.DeepEqual(got, want) {
		t.Fatalf("new replica has\n%+v\nwant\n%+v", got, want)
	}
	if got, err := b.Get(t.Context(), 3); err != nil || got.Lock != queued.Lock || got.Node != queued.Node {
		t.Fatalf("new replica: run 3 has lock %q node %q (%v), want %q %q", got.Lock, got.Node, err, queued.Lock, queued.Node)
	}

	// Pruned through a: gone from the records, and from b's database when
	// it next opens.
	pathC := filepath.Join(t.TempDir(), "c.db")
	openStore(t, pathC, recs).Close()
	pruned, err := a.Prune(t.Context(), "deploy", 0)
	if err != nil || !reflect.DeepEqual(pruned, []int64{2}) {
		t.Fatalf("pruned %v, %v; want [2]", pruned, err)
	}
	c := openStore(t, pathC, recs)
	if _, err := c.Get(t.Context(), 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("run 2 after pruning elsewhere: %v, want not found", err)
	}
	if n := len(allRuns(t, c)); n != 2 {
		t.Errorf("%d runs after pruning, want 2", n)
	}
}

// Runs recorded before the engine held records move to it with their
// ids, and new ids follow them.
func TestStoreMovesRunsToRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shiplog.db")
	old := openStore(t, path, nil)
	for range 3 {
		if err := old.Insert(t.Context(), queuedRun("deploy")); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	recs := startEngine(t).Records()
	s := openStore(t, path, recs)
	r := queuedRun("deploy")
	if err := s.Insert(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if r.ID != 4 {
		t.Errorf("new run got id %d, want 4", r.ID)
	}
	if got, want := allRuns(t, openStore(t, "", recs)), allRuns(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("a new replica has\n%+v\nwant\n%+v", got, want)
	}
}

// A write based on a revision that is no longer the record's is refused:
// a process that lost its run cannot overwrite the one that took it.
func TestStoreFencesStaleWrites(t *testing.T) {
	recs := startEngine(t).Records()
	a := openStore(t, "", recs)
	r := queuedRun("deploy")
	if err := a.Insert(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	b := openStore(t, "", recs)
	took := r.clone()
	took.State = Running
	if err := b.Update(t.Context(), took); err != nil {
		t.Fatal(err)
	}
	late := r.clone()
	late.State = Interrupted
	if err := a.Update(context.Background(), late); !errors.Is(err, engine.ErrStale) {
		t.Fatalf("late write: %v, want refused as stale", err)
	}
	got, err := openStore(t, "", recs).Get(t.Context(), r.ID)
	if err != nil || got.State != Running {
		t.Fatalf("record after the late write: %v %v, want running", got, err)
	}
}

// What the records cost a trigger and a state change: the database alone
// (before) against the engine first, then the database.
func BenchmarkStore(b *testing.B) {
	eng, err := engine.Start(b.Context(), engine.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	for _, bc := range []struct {
		name string
		recs Records
	}{{"database alone", nil}, {"records", eng.Records()}} {
		s, err := OpenStore(b.Context(), filepath.Join(b.TempDir(), "shiplog.db"), bc.recs)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name+"/insert", func(b *testing.B) {
			for b.Loop() {
				if err := s.Insert(b.Context(), queuedRun("deploy")); err != nil {
					b.Fatal(err)
				}
			}
		})
		r := queuedRun("deploy")
		if err := s.Insert(b.Context(), r); err != nil {
			b.Fatal(err)
		}
		r.State = Running
		b.Run(bc.name+"/update", func(b *testing.B) {
			for b.Loop() {
				r.Progress = &Progress{Percent: 40, Message: "migrating"}
				if err := s.Update(b.Context(), r); err != nil {
					b.Fatal(err)
				}
			}
		})
		s.Close()
	}
}
