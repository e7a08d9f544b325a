package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// deliveriesBucket holds, per run, the attempts to deliver its
// notifications, so every replica shows them: a run's record is final
// once the run ends, and deliveries go on after.
var deliveriesBucket = jetstream.KeyValueConfig{
	Bucket:       "DELIVERIES",
	Description:  "shiplog notification attempts, per run (run.<id>)",
	History:      1,
	Storage:      jetstream.FileStorage,
	MaxValueSize: 256 << 10,
	TTL:          30 * 24 * time.Hour,
}

// maxAttempts bounds the attempts kept per run (the latest ones).
const maxAttempts = 100

// Attempt is one try at delivering one notification.
type Attempt struct {
	Delivery string    `json:"delivery"` // the notification's id, the same for its retries
	Event    string    `json:"event"`
	Target   string    `json:"target"` // where it went, without secrets (scheme and host)
	Try      int       `json:"try"`    // 1 for the first
	At       time.Time `json:"at"`
	Status   int       `json:"status,omitempty"` // the HTTP answer; 0 if none
	Error    string    `json:"error,omitempty"`
	MS       int64     `json:"ms"`              // how long it took
	Final    bool      `json:"final,omitempty"` // no retry follows
}

// RecordAttempt adds a to run id's delivery log (compare-and-swap, retried).
func (e *Engine) RecordAttempt(ctx context.Context, id int64, a Attempt) error {
	key := runKey(id)
	for range 10 {
		var (
			list []Attempt
			rev  uint64
		)
		entry, err := e.deliveries.Get(ctx, key)
		switch {
		case err == nil:
			rev = entry.Revision()
			if err := json.Unmarshal(entry.Value(), &list); err != nil {
				return fmt.Errorf("read deliveries of run %d: %w", id, err)
			}
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return fmt.Errorf("read deliveries of run %d: %w", id, err)
		}
		list = append(list, a)
		if len(list) > maxAttempts {
			list = list[len(list)-maxAttempts:]
		}
		data, _ := json.Marshal(list) // plain fields
		if rev == 0 {
			_, err = e.deliveries.Create(ctx, key, data)
		} else {
			_, err = e.deliveries.Update(ctx, key, data, rev)
		}
		if err == nil {
			return nil
		}
		if err = stale(err); !errors.Is(err, ErrStale) {
			return fmt.Errorf("record a delivery of run %d: %w", id, full(err))
		}
	}
	return fmt.Errorf("record a delivery of run %d: too many writers", id)
}

// Deliveries returns run id's delivery log, oldest first.
func (e *Engine) Deliveries(ctx context.Context, id int64) ([]Attempt, error) {
	entry, err := e.deliveries.Get(ctx, runKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read deliveries of run %d: %w", id, err)
	}
	var list []Attempt
	if err := json.Unmarshal(entry.Value(), &list); err != nil {
		return nil, fmt.Errorf("read deliveries of run %d: %w", id, err)
	}
	return list, nil
}
