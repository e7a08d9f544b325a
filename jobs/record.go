package jobs

import (
	"context"
	"encoding/json"
	"fmt"
)

// Records is where run records live when the engine holds them
// (engine.Records): ids come from it, every write goes to it first, and
// the Store's database is a projection of it, so that replicas share one
// history.
type Records interface {
	// NextID hands out a run id greater than any handed out before.
	NextID(ctx context.Context) (int64, error)
	// Raise makes later ids greater than atLeast.
	Raise(ctx context.Context, atLeast int64) error
	// Put writes run id's record based on revision rev (0: new) and
	// returns the new revision; it fails if the record has moved on.
	Put(ctx context.Context, id int64, data []byte, rev uint64) (uint64, error)
	// Get returns run id's record and revision; an error if there is
	// none.
	Get(ctx context.Context, id int64) ([]byte, uint64, error)
	// Delete removes run id's record.
	Delete(ctx context.Context, id int64) error
	// Each calls fn with every record as it is now.
	Each(ctx context.Context, fn func(id int64, data []byte, rev uint64) error) error
	// Watch calls fn with every change from revision from on (nil data:
	// removed), until ctx ends or the watch breaks.
	Watch(ctx context.Context, from uint64, fn func(id int64, data []byte, rev uint64)) error
}

// record is a run's record as stored outside the database: in the engine,
// and beside its log while the database has not got its final state.
type record struct {
	*Run
	LogBytes int64 `json:"log_bytes"`
	LogLines int64 `json:"log_lines"`
	LogCut   bool  `json:"log_cut"`
	PID      int   `json:"pid,omitempty"`
}

func encodeRecord(run *Run) ([]byte, error) {
	data, err := json.Marshal(record{Run: run, LogBytes: run.LogBytes, LogLines: run.LogLines, LogCut: run.LogCut, PID: run.PID})
	if err != nil {
		return nil, fmt.Errorf("encode the record of run %d: %w", run.ID, err)
	}
	return data, nil
}

func decodeRecord(data []byte) (*Run, error) {
	rec := record{Run: &Run{}}
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decode a run record: %w", err)
	}
	run := rec.Run
	run.LogBytes, run.LogLines, run.LogCut, run.PID = rec.LogBytes, rec.LogLines, rec.LogCut, rec.PID
	return run, nil
}
