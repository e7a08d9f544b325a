package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/shiplog/shiplog/engine"
)

// parseRunnerFlags reads "shiplog runner": a process that runs the jobs of
// one zone, taken from the engine's queue, and serves no pages.
func parseRunnerFlags(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("shiplog runner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	var level string
	fs.StringVar(&cfg.NATS, "nats", envOr("SHIPLOG_NATS", ""), "the engine to join (nats://host:4222); required (env SHIPLOG_NATS)")
	fs.StringVar(&cfg.NATSTLSCA, "nats-tls-ca", envOr("SHIPLOG_NATS_TLS_CA", ""), "the CA the engine's certificates are checked against; the connection is then encrypted (env SHIPLOG_NATS_TLS_CA)")
	fs.StringVar(&cfg.NATSTokenFile, "nats-token-file", envOr("SHIPLOG_NATS_TOKEN_FILE", ""), "file holding the engine's token (env SHIPLOG_NATS_TOKEN_FILE)")
	fs.StringVar(&cfg.Zone, "zone", envOr("SHIPLOG_ZONE", "default"), "run the jobs of this zone (env SHIPLOG_ZONE)")
	fs.StringVar(&cfg.ConfigPath, "config", envOr("SHIPLOG_CONFIG", "shiplog.yaml"), "job config file, the same as the dashboards' (env SHIPLOG_CONFIG)")
	fs.StringVar(&cfg.DataDir, "data", envOr("SHIPLOG_DATA", "shiplog-runner"), "directory for this runner's logs and its copy of the run records (env SHIPLOG_DATA)")
	fs.StringVar(&level, "log-level", envOr("SHIPLOG_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM, how long running runs may finish before they are stopped")
	fs.DurationVar(&cfg.Lease, "lease", engine.DefaultLease, "how long this runner may go without renewing its lease on a run before the run is handed on as interrupted; the same on every replica and runner of a cluster")
	if err := fs.Parse(args); err != nil {
		return cfg, &exitError{code: exitUsage}
	}
	if fs.NArg() > 0 {
		return cfg, &exitError{code: exitUsage, msg: fmt.Sprintf("shiplog runner takes no arguments, got %q", fs.Args())}
	}
	if cfg.Lease < time.Second || cfg.Lease > time.Hour {
		return cfg, &exitError{code: exitUsage, msg: fmt.Sprintf("--lease %s: want from 1s to 1h", cfg.Lease)}
	}
	if cfg.NATS == "" {
		return cfg, &exitError{code: exitUsage, msg: "shiplog runner needs --nats: the engine that holds the queue"}
	}
	if cfg.Zone == "" || cfg.Zone == "none" {
		return cfg, &exitError{code: exitUsage, msg: "shiplog runner needs a --zone to run"}
	}
	cfg.configSet = true // a runner without the dashboards' config would fail every run
	if err := cfg.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return cfg, &exitError{code: exitUsage, msg: fmt.Sprintf("--log-level: %v", err)}
	}
	return cfg, nil
}

// runRunner runs the jobs of cfg.Zone until ctx ends, then lets running
// runs finish for the shutdown grace before stopping them.
func runRunner(ctx context.Context, cfg Config, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if _, err := os.Stat(cfg.ConfigPath); err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	jobCfg, _, err := loadConfig(cfg, log)
	if err != nil {
		return err
	}
	n, err := openNode(ctx, cfg, jobCfg, log, nodeHooks{})
	if err != nil {
		return err
	}
	defer n.close()
	n.follow(nil)
	log.Info("shiplog runner is taking runs", "zone", n.zone, "node", n.name, "nats", cfg.NATS)
	err = n.runner.Run(ctx)
	n.stopShipping()
	return err
}
