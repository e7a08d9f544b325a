package jobs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shiplog/shiplog/engine"
)

// engineQueue is the engine as the runner's Queue (serve.go has the same).
type engineQueue struct{ *engine.Engine }

func (q engineQueue) Take(ctx context.Context, zone string, room func() bool, roomed <-chan struct{}, take func(Lease)) error {
	return q.Engine.Take(ctx, zone, room, roomed, func(l *engine.Lease) { take(l) })
}

// node is what one shiplog process has: an engine (embedded in dir, or
// shared), a store that follows its records, and a runner.
type node struct {
	eng    *engine.Engine
	store  *Store
	runner *Runner
	stop   func()
}

// startNode starts a node whose data lives in dir; with eng, it joins that
// engine instead of embedding one. The runner runs zone (none if "").
// Nothing is started with Run: the caller decides when.
func startNode(ctx context.Context, dir string, eng *engine.Engine, cfg *Config, opts RunnerOptions) (*node, error) {
	n := &node{eng: eng}
	ctx, cancel := context.WithCancel(ctx)
	var closers []func()
	n.stop = func() {
		cancel()
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if n.eng == nil {
		var err error
		if n.eng, err = engine.Start(ctx, engine.Config{Dir: filepath.Join(dir, "engine"), Lease: opts.Lease}); err != nil {
			cancel()
			return nil, err
		}
		closers = append(closers, n.eng.Close)
	}
	store, err := OpenStore(ctx, filepath.Join(dir, "shiplog.db"), n.eng.Records())
	if err != nil {
		n.stop()
		return nil, err
	}
	n.store = store
	closers = append(closers, func() { store.Close() })
	followed := make(chan struct{})
	go func() { defer close(followed); store.Follow(ctx, nil, func(error) {}) }()
	closers = append(closers, func() { <-followed })
	if opts.LogDir == "" {
		opts.LogDir = filepath.Join(dir, "logs")
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		n.stop()
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts.Queue, opts.SealLog = engineQueue{n.eng}, n.eng.SealLog
	// Logs go to the engine as the runner writes them, as serve sends them.
	shipper := n.eng.Shipper(ctx, func(id int64) string { return n.runner.LogPath(id) })
	closed := opts.OnLogClosed
	opts.OnLogGrew = shipper.Grew
	opts.OnLogClosed = func(id, size int64) {
		shipper.Finish(id, size)
		if closed != nil {
			closed(id, size)
		}
	}
	opts.Lease = n.eng.LeaseTime()
	if opts.Node == "" {
		opts.Node = "node-" + filepath.Base(dir)
	}
	n.runner = NewRunner(cfg, store, opts)
	return n, nil
}

// testNode starts a node for the test, running the default zone, and
// its runner; all stop when the test ends.
func testNode(t testing.TB, dir string, eng *engine.Engine, cfg *Config, opts RunnerOptions) *node {
	t.Helper()
	if opts.Zone == "" {
		opts.Zone = DefaultZone
	}
	n, err := startNode(context.Background(), dir, eng, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.runner.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
		n.stop()
	})
	return n
}

func mustParse(t testing.TB, yaml string) *Config {
	t.Helper()
	cfg, err := ParseConfig("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(fmt.Errorf("config: %w", err))
	}
	return cfg
}

// shortLease is the lease in tests that wait for one to lapse.
const shortLease = 2 * time.Second
