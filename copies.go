package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/shiplog/shiplog/engine"
	"github.com/shiplog/shiplog/jobs"
	"github.com/shiplog/shiplog/streams"
)

// logCopies keeps this node's copies of the logs of runs that run on
// other nodes (or are still queued): a run's log is copied from the
// engine, byte for byte with its index and times, when someone first asks
// for it, and the copy grows as the run writes. The tailer and readers
// then serve the copy as they serve a local log. One engine subscription
// per run being copied, however many watch it: the hub fans the copy out.
type logCopies struct {
	ctx    context.Context
	eng    *engine.Engine
	hub    *streams.Hub
	runner *jobs.Runner
	node   string
	log    *slog.Logger

	mu      sync.Mutex
	copying map[int64]*logCopy
	pending map[int64]bool // queued runs to copy if they run elsewhere (see later)
	wg      sync.WaitGroup
}

// logCopy is one log being copied.
type logCopy struct {
	done chan struct{} // closed when the copy stops
	err  error         // why it stopped short; set before done is closed

	mu   sync.Mutex
	size int64         // bytes copied so far
	grew chan struct{} // closed, and replaced, at each write
}

func (lc *logCopy) wrote(size int64) {
	lc.mu.Lock()
	lc.size = size
	close(lc.grew)
	lc.grew = make(chan struct{})
	lc.mu.Unlock()
}

func newLogCopies(ctx context.Context, eng *engine.Engine, hub *streams.Hub, runner *jobs.Runner, node string, log *slog.Logger) *logCopies {
	return &logCopies{ctx: ctx, eng: eng, hub: hub, runner: runner, node: node, log: log, copying: map[int64]*logCopy{}, pending: map[int64]bool{}}
}

// later is for a queued run that this node may run: its readers follow
// the local log file, which this node's runner writes if it takes the
// run; if another node does, a copy fills the file instead, from the
// moment the run leaves the queue.
func (c *logCopies) later(id int64) error {
	path := c.runner.LogPath(id)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	f.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[id] {
		return nil
	}
	c.pending[id] = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.pending, id)
			c.mu.Unlock()
		}()
		for {
			changed := c.runner.Watch(id)
			run, err := c.runner.Get(c.ctx, id)
			if err != nil {
				return // pruned
			}
			if run.State != jobs.Queued {
				if run.Node == c.node {
					return // this node's runner writes it
				}
				lc, err := c.start(run)
				switch {
				case err != nil:
					c.log.Error("copy log from the engine", "run_id", id, "err", err)
				case lc == nil:
					// Whole already: it ended before it started (canceled
					// while queued).
					c.hub.Finish(streams.Key(id), run.LogBytes)
				}
				return
			}
			select {
			case <-changed:
			case <-c.ctx.Done():
				return
			}
		}
	}()
	return nil
}

// have makes sure the copy of run's log is here, or on its way: a
// running run's copy grows as the run writes (readers follow it, as they
// follow a local log); a finished run's is complete when have returns.
func (c *logCopies) have(ctx context.Context, run *jobs.Run) error {
	lc, err := c.start(run)
	if err != nil || lc == nil || !run.State.Finished() {
		return err
	}
	select {
	case <-lc.done:
		if lc.err != nil {
			return errLogUnavailable
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errLogUnavailable says a finished run's log is in the engine, which
// cannot be reached now: the reader asks again later, rather than take a
// part for the whole.
var errLogUnavailable = &apiError{status: http.StatusServiceUnavailable, msg: "this run's log is in the engine, which cannot be reached now; try again shortly"}

// reachWait bounds how long a reader resuming past the end of a copy
// waits for it to get there.
const reachWait = 10 * time.Second

// reach waits, for reachWait at most, until run id's copy has off bytes,
// if it is being copied: a viewer who read that far on another replica
// goes on here, rather than being told the offset is past the end.
func (c *logCopies) reach(ctx context.Context, id, off int64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	lc := c.copying[id]
	c.mu.Unlock()
	if lc == nil {
		return
	}
	timer := time.NewTimer(reachWait)
	defer timer.Stop()
	for {
		lc.mu.Lock()
		size, grew := lc.size, lc.grew
		lc.mu.Unlock()
		if size >= off {
			return
		}
		select {
		case <-grew:
		case <-lc.done:
			return
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// start starts copying run's log unless it is here whole or being copied,
// and returns the copy; nil if the log is whole.
func (c *logCopies) start(run *jobs.Run) (*logCopy, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if lc, ok := c.copying[run.ID]; ok {
		return lc, nil
	}
	path := c.runner.LogPath(run.ID)
	// The file is there before anyone looks for it: readers of a run
	// being copied wait for its lines, not for its file.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("copy log: %w", err)
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("copy log: %w", err)
	}
	if run.State.Finished() && fi.Size() == run.LogBytes {
		return nil, nil // whole
	}
	if !c.eng.Connected() && run.State.Finished() {
		return nil, errLogUnavailable
	}
	lc := &logCopy{done: make(chan struct{}), size: fi.Size(), grew: make(chan struct{})}
	c.copying[run.ID] = lc
	c.wg.Add(1)
	go c.copy(run.ID, path, lc)
	return lc, nil
}

func (c *logCopies) copy(id int64, path string, lc *logCopy) {
	defer c.wg.Done()
	var (
		size int64
		err  error
	)
	// The run's unfinished line, for viewers who ask (the hub shows it once
	// the copy has the lines before it).
	key := streams.Key(id)
	if stop, err := c.eng.FollowPartials(c.ctx, id, func(at int64, text []byte) { c.hub.Partial(key, at, text) }); err == nil {
		defer stop()
	} else {
		c.log.Warn("follow the run's unfinished line", "run_id", id, "err", err)
	}
	// Until the end is in: a copy broken by the engine going away goes on
	// from what it has once the engine is back.
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		size, err = c.eng.MirrorLog(c.ctx, id, path, lc.wrote)
		if err == nil || c.ctx.Err() != nil || errors.Is(err, engine.ErrLogGap) {
			break
		}
		c.log.Warn("copy log from the engine: retrying", "run_id", id, "err", err)
		select {
		case <-c.ctx.Done():
		case <-time.After(backoff):
		}
	}
	c.mu.Lock()
	delete(c.copying, id)
	c.mu.Unlock()
	lc.err = err
	close(lc.done)
	switch {
	case err == nil:
		c.hub.Finish(streams.Key(id), size)
	case errors.Is(err, context.Canceled) && c.ctx.Err() != nil:
	default:
		// The next reader starts the copy again, from what it has.
		c.log.Error("copy log from the engine", "run_id", id, "err", err)
	}
}

// Active returns how many logs are being copied.
func (c *logCopies) Active() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.copying)
}

// Wait waits for the copies to stop (after their context ended).
func (c *logCopies) Wait() {
	if c != nil {
		c.wg.Wait()
	}
}
