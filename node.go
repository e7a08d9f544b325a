package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shiplog/shiplog/engine"
	"github.com/shiplog/shiplog/jobs"
	"github.com/shiplog/shiplog/notify"
)

// node is what every shiplog process has, whether it serves pages
// (serve) or only runs jobs (runner): its data dir, held; the engine; the
// store that follows the run records; the runner of its zone; and the
// shipper that sends the logs of its runs to the engine.
type node struct {
	name     string
	zone     string // "" runs nothing
	eng      *engine.Engine
	store    *jobs.Store
	runner   *jobs.Runner
	shipper  *engine.Shipper
	partials *engine.PartialSender // unfinished lines, to the nodes that copy logs
	notifier *notify.Notifier      // webhooks
	shipCtx  context.Context
	log      *slog.Logger

	stopShip context.CancelFunc
	closers  []func()
}

// nodeHooks are what the process adds to the runner's observers.
type nodeHooks struct {
	closed   func(id, size int64) // a run's log is complete
	finished func(run *jobs.Run)
	partial  func(id, at int64, text []byte) // a run's unfinished last line changed
}

// openNode opens the node that cfg describes. Close it with close.
func openNode(ctx context.Context, cfg Config, jobCfg *jobs.Config, log *slog.Logger, hooks nodeHooks) (_ *node, err error) {
	n := &node{log: log}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.closers = append(n.closers, unlock)
	logDir := filepath.Join(cfg.DataDir, "logs")
	if err := os.MkdirAll(logDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	token, err := readToken(cfg.NATSTokenFile)
	if err != nil {
		return nil, err
	}
	// The engine: embedded by default, its store under the data dir and
	// no listener; or the one a replica or runner joins.
	if n.eng, err = engine.Start(ctx, engine.Config{
		Dir: filepath.Join(cfg.DataDir, "engine"), Listen: cfg.NATSListen, URL: cfg.NATS, Token: token, Logger: log, Lease: cfg.Lease,
		TLS: engine.TLS{Cert: cfg.NATSTLSCert, Key: cfg.NATSTLSKey, CA: cfg.NATSTLSCA},
	}); err != nil {
		return nil, err
	}
	if cfg.NATSListen != "" && cfg.NATSTLSCert == "" && !loopback(cfg.NATSListen) {
		log.Warn("the engine's connections are not encrypted: give --nats-tls-cert and --nats-tls-key, or keep them on a private network")
	}
	n.closers = append(n.closers, n.eng.Close)
	if u := n.eng.ClientURL(); u != "" {
		log.Info("replicas and runners may join the engine", "nats", u)
	}
	if cfg.NATS != "" {
		log.Info("joined the engine", "nats", cfg.NATS)
	}
	// Run records live in the engine; the database is its projection.
	if n.store, err = jobs.OpenStore(ctx, filepath.Join(cfg.DataDir, "shiplog.db"), n.eng.Records()); err != nil {
		return nil, err
	}
	n.closers = append(n.closers, func() { n.store.Close() })
	n.shipCtx, n.stopShip = context.WithCancel(context.WithoutCancel(ctx))
	n.closers = append(n.closers, n.stopShip)
	if n.name, err = nodeName(cfg.DataDir); err != nil {
		return nil, err
	}
	n.zone = cfg.Zone
	if n.zone == "" && cfg.NATS == "" {
		n.zone = jobs.DefaultZone
	}
	if n.zone == "none" {
		n.zone = ""
	}
	// Webhooks, delivered in the background; each attempt goes to the
	// engine, so every replica shows the run's delivery log.
	nopts := cfg.Notify
	nopts.Recorder = func(ctx context.Context, id int64, a notify.Attempt) error {
		return n.eng.RecordAttempt(ctx, id, engine.Attempt{
			Delivery: a.Delivery, Event: a.Event, Target: a.Target, Try: a.Try, At: a.At,
			Status: a.Status, Error: a.Error, MS: a.Took.Milliseconds(), Final: a.Final,
		})
	}
	n.notifier = notify.New(log, nopts) //nolint:contextcheck // deliveries outlive any request; Close ends them
	n.closers = append(n.closers, n.notifier.Close)
	if n.partials, err = n.eng.Partials(); err != nil {
		return nil, err
	}
	n.closers = append(n.closers, n.partials.Close)
	n.shipper = n.eng.Shipper(n.shipCtx, func(id int64) string { return n.runner.LogPath(id) }) //nolint:contextcheck // shipCtx is ctx without its cancel: shipping outlasts the signal to stop
	n.runner = jobs.NewRunner(jobCfg, n.store, jobs.RunnerOptions{
		LogDir: logDir, Logger: log, ShutdownGrace: cfg.ShutdownGrace, ToolDir: toolDir(cfg.DataDir, log),
		Queue: engineQueue{n.eng}, Zone: n.zone, Node: n.name, Lease: n.eng.LeaseTime(), SealLog: n.eng.SealLog,
		OnLogGrew: n.shipper.Grew,
		OnPartial: func(id, at int64, text []byte) {
			if hooks.partial != nil {
				hooks.partial(id, at, text)
			}
			n.partials.Tell(id, at, text) // to the nodes that copy its log
		},
		OnLogClosed: func(id, size int64) {
			if hooks.closed != nil {
				hooks.closed(id, size)
			}
			n.shipper.Finish(id, size)
		},
		OnPruned: func(ids []int64) {
			if err := n.eng.PurgeLogs(n.shipCtx, ids); err != nil {
				log.Error("purge pruned logs from the engine", "err", err)
			}
		},
		OnFinish: func(run *jobs.Run) {
			if hooks.finished != nil {
				hooks.finished(run)
			}
			n.notifier.Notify(jobCfg.Hooks(run.Job), string(run.State), notifyRun(run, cfg.PublicURL))
		},
		OnGate: func(run *jobs.Run) {
			n.notifier.Notify(jobCfg.Hooks(run.Job), "waiting", notifyRun(run, cfg.PublicURL))
		},
	})
	if n.zone != "" {
		log.Info("running the jobs of a zone", "zone", n.zone, "node", n.name)
		if err := n.runner.Recover(ctx, n.eng.WorkIsNew()); err != nil {
			return nil, err
		}
		// Logs of runs that ran here, complete before this start (no run
		// is running yet), that the engine may not have whole. (The other
		// logs here are copies from the engine.)
		complete, err := logSizes(logDir)
		if err != nil {
			return nil, err
		}
		for id := range complete {
			run, err := n.store.Get(ctx, id)
			ranHere := err == nil && (run.Node == n.name || run.Node == "" && run.State.Finished()) // "": before records named nodes
			if !ranHere {
				delete(complete, id)
			}
		}
		n.shipper.Backfill(complete)
	}
	return n, nil
}

// follow keeps the node's database in step with changes made by any node,
// until the node closes; a run pruned anywhere leaves this data dir too
// (removed is told, for what else the process keeps of it).
func (n *node) follow(removed func(id int64)) {
	go n.store.Follow(n.shipCtx, func(id int64) {
		n.runner.RemoveLog(id)
		if removed != nil {
			removed(id)
		}
	}, func(err error) { n.log.Error("follow run records", "err", err) })
}

// stopShipping waits, 5 s at most, for the logs of this node's runs to be
// in the engine, then stops shipping and following. Call it once the
// runner has stopped.
func (n *node) stopShipping() {
	shipped := make(chan struct{})
	go func() { n.shipper.Wait(); close(shipped) }()
	select {
	case <-shipped:
	case <-time.After(5 * time.Second):
		n.log.Warn("logs not all in the engine after 5s; the rest goes at the next start")
	}
	n.stopShip()
}

// close releases what openNode took, last first.
func (n *node) close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
	n.closers = nil
}

// toolDir makes DATA/bin/shiplog, this very binary, for jobs to call
// (`shiplog gate`): the runner puts the directory first on their PATH, so
// it works from `go run .` too. "" if this binary cannot be found.
func toolDir(dataDir string, log *slog.Logger) string {
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		log.Warn("jobs cannot call shiplog (shiplog gate): this binary is not found", "err", err)
		return ""
	}
	dir := filepath.Join(dataDir, "bin")
	link := filepath.Join(dir, "shiplog")
	if err = os.MkdirAll(dir, 0o755); err == nil {
		_ = os.Remove(link) // a binary moved since the last start
		err = os.Symlink(self, link)
	}
	if err != nil {
		log.Warn("jobs cannot call shiplog (shiplog gate)", "err", err)
		return ""
	}
	return dir
}

// notifyRun is what a notification says of run; its link is on publicURL
// when the server has one.
func notifyRun(run *jobs.Run, publicURL string) notify.Run {
	out := notify.Run{
		ID: run.ID, Job: run.Job, State: string(run.State), ExitCode: run.ExitCode, Error: run.Error,
		Params: run.Params, TriggeredBy: run.TriggeredBy, Environment: run.Environment, Version: run.Version,
		URL: strings.TrimSuffix(publicURL, "/") + "/runs/" + strconv.FormatInt(run.ID, 10),
	}
	if g := run.OpenGate(); g != nil {
		out.Question = g.Question
	}
	if run.StartedAt != nil && run.FinishedAt != nil {
		d := run.FinishedAt.Sub(*run.StartedAt).Milliseconds()
		out.DurationMS = &d
	}
	return out
}
