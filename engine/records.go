package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Run records live in the RUNS bucket, one key per run (run.<id>), with
// the last run id handed out under "seq". The bucket is the truth; each
// replica's database is a projection of it. A record's revision fences
// writers: a write names the revision it was based on, and fails if the
// record has changed since.
var runsBucket = jetstream.KeyValueConfig{
	Bucket:      "RUNS",
	Description: "shiplog run records (run.<id>) and the last run id (seq)",
	History:     1,
	Storage:     jetstream.FileStorage,
	// A record is a run's fields, its parameters and annotations; the
	// runner bounds both well under this.
	MaxValueSize: maxPayload,
}

const seqKey = "seq"

// ErrStale says a record changed since the revision a write was based on:
// another writer got there first, and this one must not overwrite it.
var ErrStale error = staleError{}

// staleError says Stale, so that packages that do not import this one
// (jobs) can tell a refused write from a failed one.
type staleError struct{}

func (staleError) Error() string { return "the run record changed since it was read" }
func (staleError) Stale() bool   { return true }

// Records holds run records in the engine.
type Records struct {
	e  *Engine
	kv jetstream.KeyValue
}

// Records returns the engine's run records.
func (e *Engine) Records() *Records { return &Records{e: e, kv: e.runs} }

func runKey(id int64) string { return "run." + strconv.FormatInt(id, 10) }

// NextID hands out the next run id: one greater than any handed out
// before, by any replica.
func (r *Records) NextID(ctx context.Context) (int64, error) {
	if !r.e.nc.IsConnected() {
		return 0, ErrUnreachable
	}
	for {
		last, rev, err := r.seq(ctx)
		if err != nil {
			return 0, err
		}
		if err := r.setSeq(ctx, last+1, rev); err == nil {
			return last + 1, nil
		} else if !errors.Is(err, ErrStale) {
			return 0, err
		}
		// Another replica took it: read again.
	}
}

// Raise makes sure ids handed out from now on are greater than atLeast:
// runs recorded before the engine held the counter keep their ids.
func (r *Records) Raise(ctx context.Context, atLeast int64) error {
	for {
		last, rev, err := r.seq(ctx)
		if err != nil || last >= atLeast {
			return err
		}
		if err := r.setSeq(ctx, atLeast, rev); !errors.Is(err, ErrStale) {
			return err
		}
	}
}

// seq returns the last id handed out and its revision (0 when none was).
func (r *Records) seq(ctx context.Context) (last int64, rev uint64, err error) {
	data, rev, err := r.leaderGet(ctx, seqKey)
	if errors.Is(err, ErrNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read the run id counter: %w", err)
	}
	last, err = strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("read the run id counter: %q: %w", data, err)
	}
	return last, rev, nil
}

// leaderGet reads key's last value, and its revision, from the leader of
// the bucket's stream. The client's Get may be answered by any of a
// cluster's copies (a direct get), which can be a moment behind the last
// write: a reader that must see that write, and a writer that bases a
// compare-and-swap on what it read, ask the leader.
func (r *Records) leaderGet(ctx context.Context, key string) ([]byte, uint64, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": "$KV." + runsBucket.Bucket + "." + key})
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	msg, err := r.e.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+runsBucket.Bucket, req)
	if err != nil {
		return nil, 0, err
	}
	var resp struct {
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq  uint64 `json:"seq"`
			Hdrs []byte `json:"hdrs"`
			Data []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, 0, fmt.Errorf("the engine's answer: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(server.JSNoMessageFoundErr):
		return nil, 0, ErrNotFound
	case resp.Error != nil:
		return nil, 0, fmt.Errorf("the engine: %s", resp.Error.Description)
	case resp.Message == nil:
		return nil, 0, errors.New("the engine's answer holds no record")
	}
	if len(resp.Message.Hdrs) > 0 {
		// A delete or purge leaves a marker with no value.
		if h, err := nats.DecodeHeadersMsg(resp.Message.Hdrs); err == nil && h.Get("KV-Operation") != "" {
			return nil, 0, ErrNotFound
		}
	}
	return resp.Message.Data, resp.Message.Seq, nil
}

func (r *Records) setSeq(ctx context.Context, v int64, rev uint64) error {
	if _, err := r.put(ctx, seqKey, []byte(strconv.FormatInt(v, 10)), rev); err != nil {
		return fmt.Errorf("advance the run id counter: %w", err)
	}
	return nil
}

// Put writes run id's record, based on revision rev (0: the record must
// not exist yet), and returns its new revision. It fails with ErrStale if
// the record's revision is no longer rev.
func (r *Records) Put(ctx context.Context, id int64, data []byte, rev uint64) (uint64, error) {
	n, err := r.put(ctx, runKey(id), data, rev)
	if err != nil {
		return 0, fmt.Errorf("write the record of run %d: %w", id, err)
	}
	return n, nil
}

func (r *Records) put(ctx context.Context, key string, data []byte, rev uint64) (uint64, error) {
	if !r.e.nc.IsConnected() {
		return 0, ErrUnreachable // a write now would wait in the reconnect buffer
	}
	if err := r.e.room(len(data)); err != nil {
		return 0, err
	}
	var (
		n   uint64
		err error
	)
	if rev == 0 {
		n, err = r.kv.Create(ctx, key, data)
	} else {
		n, err = r.kv.Update(ctx, key, data, rev)
	}
	return n, full(stale(err))
}

// stale maps the engine's revision conflicts to ErrStale.
func stale(err error) error {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%w: %w", ErrStale, err)
	}
	return err
}

// Delete removes run id's record.
func (r *Records) Delete(ctx context.Context, id int64) error {
	if err := r.kv.Purge(ctx, runKey(id)); err != nil {
		return fmt.Errorf("delete the record of run %d: %w", id, err)
	}
	return nil
}

// Each calls fn with every run record as it is now, in the order they
// were last written, and stops at fn's first error.
func (r *Records) Each(ctx context.Context, fn func(id int64, data []byte, rev uint64) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := r.kv.Watch(ctx, "run.*", jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("read run records: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("read run records: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("read run records: the engine closed the watch")
			}
			if e == nil {
				return nil // every record as of the watch's start
			}
			id, err := strconv.ParseInt(strings.TrimPrefix(e.Key(), "run."), 10, 64)
			if err != nil {
				continue // not a run's key
			}
			if err := fn(id, e.Value(), e.Revision()); err != nil {
				return err
			}
		}
	}
}

// Watch calls fn with every change to run records from revision from on
// (1: from the oldest kept), in the order they were made, until ctx ends
// or the engine ends the watch: the record's new data and revision, or nil
// data when the record was removed. fn runs on Watch's goroutine: while it
// works, changes wait.
func (r *Records) Watch(ctx context.Context, from uint64, fn func(id int64, data []byte, rev uint64)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := r.kv.Watch(ctx, "run.*", jetstream.ResumeFromRevision(max(from, 1)))
	if err != nil {
		return fmt.Errorf("watch run records: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch run records: the engine closed the watch")
			}
			if e == nil {
				continue // caught up
			}
			id, err := strconv.ParseInt(strings.TrimPrefix(e.Key(), "run."), 10, 64)
			if err != nil {
				continue
			}
			var data []byte
			if e.Operation() == jetstream.KeyValuePut {
				data = e.Value()
			}
			fn(id, data, e.Revision())
		}
	}
}

// Get returns run id's record and its revision; ErrNotFound if there is
// none.
func (r *Records) Get(ctx context.Context, id int64) ([]byte, uint64, error) {
	if !r.e.nc.IsConnected() {
		return nil, 0, ErrUnreachable
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	data, rev, err := r.leaderGet(ctx, runKey(id))
	if errors.Is(err, ErrNotFound) {
		return nil, 0, err
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the record of run %d: %w", id, err)
	}
	return data, rev, nil
}

// ErrNotFound says there is no record of a run.
var ErrNotFound error = notFoundError{}

// notFoundError says NotFound, for packages that do not import this one.
type notFoundError struct{}

func (notFoundError) Error() string  { return "no record of the run" }
func (notFoundError) NotFound() bool { return true }
