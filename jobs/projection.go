package jobs

import (
	"context"
	"fmt"
	"time"
)

// Follow keeps the database in step with the records as any replica
// changes them, until ctx ends: a changed record is written in and wakes
// its watchers; a removed one (pruned by whichever node ran it) is deleted,
// and removed is called with its id so its log copy goes too. A broken
// watch is opened again from the last change it delivered.
func (s *Store) Follow(ctx context.Context, removed func(id int64), log func(err error)) {
	if s.recs == nil {
		return
	}
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := s.recs.Watch(ctx, s.next, func(id int64, data []byte, rev uint64) {
			s.next = rev + 1
			if err := s.apply(ctx, id, data, rev, removed); err != nil && ctx.Err() == nil {
				log(err)
			}
		})
		if ctx.Err() != nil {
			return
		}
		log(fmt.Errorf("follow run records: %w", err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// apply takes one change to run id's record into the database.
func (s *Store) apply(ctx context.Context, id int64, data []byte, rev uint64, removed func(int64)) error {
	defer s.wake(id)
	defer s.lineMoved()
	if data == nil {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM runs WHERE id = ? AND rev < ?`, id, rev); err != nil {
			return fmt.Errorf("delete run %d: %w", id, err)
		}
		if removed != nil {
			removed(id)
		}
		return nil
	}
	var have uint64
	if err := s.db.QueryRowContext(ctx, `SELECT rev FROM runs WHERE id=?`, id).Scan(&have); err == nil && have >= rev {
		return nil // this process wrote it, or had it already
	}
	run, err := decodeRecord(data)
	if err != nil {
		return fmt.Errorf("run %d: %w", id, err)
	}
	run.ID = id
	return s.save(ctx, run, rev)
}

// Watch returns a channel closed at the next change to run id's record
// made anywhere, as Follow sees it (nil without records). Read the run
// after calling Watch: a change in between closes the channel. A finished
// run's channel is never closed (unless the run is pruned): read its
// state rather than wait. The channels are one per run, however many
// watch it.
//
// A queued run's channel is closed at any change to any run, since what
// it waits for follows from the others (see fillWaits).
func (s *Store) Watch(id int64) <-chan struct{} {
	if s.recs == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queued[id] {
		if s.line == nil {
			s.line = make(chan struct{})
		}
		return s.line
	}
	ch, ok := s.watchers[id]
	if !ok {
		ch = make(chan struct{})
		s.watchers[id] = ch
	}
	return ch
}

func (s *Store) wake(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.watchers[id]; ok {
		close(ch)
		delete(s.watchers, id)
	}
}

// lineMoved wakes the watchers of queued runs.
func (s *Store) lineMoved() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line != nil {
		close(s.line)
		s.line = nil
	}
}
