package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shiplog/shiplog/access"
	"github.com/shiplog/shiplog/engine"
	"github.com/shiplog/shiplog/jobs"
	"github.com/shiplog/shiplog/notify"
	"github.com/shiplog/shiplog/streams"
)

// Config is everything the server takes from flags and the environment.
type Config struct {
	Addr          string
	ConfigPath    string
	configSet     bool
	DataDir       string
	LogLevel      slog.Level
	ShutdownGrace time.Duration
	// Lease is how long a runner may go without renewing its lease on a
	// run; every process of a cluster must agree (engine.DefaultLease).
	Lease    time.Duration
	Insecure bool // serve without tokens on a non-loopback address
	// MaxConnections caps open client connections; 0: what the open-file
	// limit allows after a reserve for the runner.
	MaxConnections int
	// HeaderTimeout is how long a client may take to send a request's
	// headers before its connection is closed; 10s if zero.
	HeaderTimeout time.Duration
	// WriteTimeout bounds writing an ordinary answer (see conns.go);
	// writeTimeout if zero. Tests shorten it.
	WriteTimeout time.Duration
	// SearchBudget is how long one log search may run; 10s if zero.
	SearchBudget time.Duration
	Limits       Limits
	// PublicURL is the address people reach the server by, behind a proxy
	// or under a DNS name; its host is accepted in Host and Origin.
	PublicURL string
	// Notify tunes webhook delivery (tests make it quick); zero: defaults.
	Notify notify.Options
	// AllowedHosts are more names the server answers to ("*.example.com"
	// for a domain); loopback names and the listen address always work.
	AllowedHosts []string
	// TrustedProxies are the only peers whose X-Forwarded-For and
	// X-Forwarded-Proto are believed.
	TrustedProxies []*net.IPNet
	TLSCert        string // with TLSKey: serve HTTPS (and HTTP/2)
	TLSKey         string
	// NATSListen, NATS and NATSTokenFile choose the engine: embedded
	// without a listener (none set), embedded and reachable by replicas
	// (NATSListen), or an engine elsewhere that this replica joins (NATS).
	NATSListen    string
	NATS          string
	NATSTokenFile string
	// NATSTLS: the embedded listener's certificate and key, and the CA
	// that an engine elsewhere is checked against.
	NATSTLSCert, NATSTLSKey, NATSTLSCA string
	// Zone is the zone whose jobs this process runs: "default" if empty
	// with the embedded engine, none if empty with NATS or "none".
	Zone string
	// Listener, when set, is used instead of listening on Addr (tests).
	Listener net.Listener
	// Ready, when set, receives the server's base URL once it serves.
	Ready chan<- string
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func parseServeFlags(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("shiplog serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	var level string
	fs.StringVar(&cfg.Addr, "addr", envOr("SHIPLOG_ADDR", "127.0.0.1:8080"), "address to listen on (env SHIPLOG_ADDR)")
	fs.StringVar(&cfg.ConfigPath, "config", envOr("SHIPLOG_CONFIG", "shiplog.yaml"), "job config file; the built-in demo jobs are served if the default is absent (env SHIPLOG_CONFIG)")
	fs.StringVar(&cfg.DataDir, "data", envOr("SHIPLOG_DATA", "shiplog-data"), "directory for the run database and logs (env SHIPLOG_DATA)")
	fs.StringVar(&level, "log-level", envOr("SHIPLOG_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM, how long running runs may finish before they are stopped")
	fs.DurationVar(&cfg.Lease, "lease", engine.DefaultLease, "how long a runner may go without renewing its lease on a run before the run is interrupted; the same on every replica and runner of a cluster")
	fs.IntVar(&cfg.Limits.Streams, "max-streams", 10000, "open event streams in total (0: no limit)")
	fs.IntVar(&cfg.Limits.StreamsPerClient, "max-streams-per-client", 100, "open event streams per token or address (0: no limit)")
	fs.IntVar(&cfg.Limits.TriggersPerMinute, "max-triggers-per-minute", 60, "runs a token or address may start per minute, in bursts of as many (0: no limit)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", envOr("SHIPLOG_TLS_CERT", ""), "certificate file (PEM): serve HTTPS with HTTP/2 (env SHIPLOG_TLS_CERT)")
	fs.StringVar(&cfg.TLSKey, "tls-key", envOr("SHIPLOG_TLS_KEY", ""), "private key file (PEM) for --tls-cert (env SHIPLOG_TLS_KEY)")
	fs.IntVar(&cfg.MaxConnections, "max-connections", 0, "open client connections at most (0: from the open-file limit, keeping a reserve for jobs)")
	fs.StringVar(&cfg.PublicURL, "public-url", envOr("SHIPLOG_PUBLIC_URL", ""), "the URL people reach shiplog by, e.g. https://deploy.example.com (env SHIPLOG_PUBLIC_URL)")
	allowed := fs.String("allowed-hosts", envOr("SHIPLOG_ALLOWED_HOSTS", ""), "more host names to answer to, comma-separated; *.example.com for a domain (env SHIPLOG_ALLOWED_HOSTS)")
	proxies := fs.String("trusted-proxies", envOr("SHIPLOG_TRUSTED_PROXIES", ""), "addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed, comma-separated (env SHIPLOG_TRUSTED_PROXIES)")
	fs.StringVar(&cfg.NATSListen, "nats-listen", envOr("SHIPLOG_NATS_LISTEN", ""), "also let replicas reach the embedded engine at this host:port; not on loopback only with --nats-token-file (env SHIPLOG_NATS_LISTEN)")
	fs.StringVar(&cfg.NATS, "nats", envOr("SHIPLOG_NATS", ""), "join the engine at this URL (nats://host:4222) as a replica: it runs no jobs, the node that embeds the engine does (env SHIPLOG_NATS)")
	fs.StringVar(&cfg.Zone, "zone", envOr("SHIPLOG_ZONE", ""), "run the jobs of this zone here (default: \"default\" with the embedded engine, none with --nats; \"none\": run nothing) (env SHIPLOG_ZONE)")
	fs.StringVar(&cfg.NATSTokenFile, "nats-token-file", envOr("SHIPLOG_NATS_TOKEN_FILE", ""), "file holding the token replicas and the engine share (env SHIPLOG_NATS_TOKEN_FILE)")
	fs.StringVar(&cfg.NATSTLSCert, "nats-tls-cert", envOr("SHIPLOG_NATS_TLS_CERT", ""), "with --nats-listen: the embedded engine's TLS certificate (PEM) (env SHIPLOG_NATS_TLS_CERT)")
	fs.StringVar(&cfg.NATSTLSKey, "nats-tls-key", envOr("SHIPLOG_NATS_TLS_KEY", ""), "with --nats-listen: its key (env SHIPLOG_NATS_TLS_KEY)")
	fs.StringVar(&cfg.NATSTLSCA, "nats-tls-ca", envOr("SHIPLOG_NATS_TLS_CA", ""), "with --nats: the CA the engine's certificates are checked against; the connection is then encrypted (env SHIPLOG_NATS_TLS_CA)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "serve without tokens on a non-loopback address (anyone who can reach it can run jobs)")
	if err := fs.Parse(args); err != nil {
		return cfg, &exitError{code: exitUsage}
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			cfg.configSet = true
		}
	})
	if os.Getenv("SHIPLOG_CONFIG") != "" {
		cfg.configSet = true
	}
	for _, h := range strings.Split(*allowed, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.AllowedHosts = append(cfg.AllowedHosts, h)
		}
	}
	var err error
	if cfg.TrustedProxies, err = parseCIDRs(*proxies); err != nil {
		return cfg, &exitError{code: exitUsage, msg: err.Error()}
	}
	if cfg.Lease < time.Second || cfg.Lease > time.Hour {
		return cfg, &exitError{code: exitUsage, msg: fmt.Sprintf("--lease %s: want from 1s to 1h", cfg.Lease)}
	}
	if (cfg.NATSTLSCert != "") != (cfg.NATSTLSKey != "") || (cfg.NATSTLSCert != "" && cfg.NATSListen == "") {
		return cfg, &exitError{code: exitUsage, msg: "--nats-tls-cert and --nats-tls-key go together, with --nats-listen"}
	}
	if cfg.NATS != "" && cfg.NATSListen != "" {
		return cfg, &exitError{code: exitUsage, msg: "--nats joins an engine elsewhere; --nats-listen opens the embedded one: choose one"}
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return cfg, &exitError{code: exitUsage, msg: "--tls-cert and --tls-key go together"}
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return cfg, &exitError{code: exitUsage, msg: fmt.Sprintf("--log-level: %v", err)}
	}
	return cfg, nil
}

// loadConfig reads the config file, or the demo when the default file is
// absent: the jobs and the access policy.
func loadConfig(cfg Config, log *slog.Logger) (*jobs.Config, *access.Policy, error) {
	name, data := cfg.ConfigPath, jobs.DemoConfig
	if _, err := os.Stat(cfg.ConfigPath); errors.Is(err, os.ErrNotExist) && !cfg.configSet {
		log.Info("no config file: serving the built-in demo jobs", "looked_for", cfg.ConfigPath)
		name = "built-in demo config"
	} else {
		var err error
		if data, err = os.ReadFile(cfg.ConfigPath); err != nil {
			return nil, nil, fmt.Errorf("read config: %w", err)
		}
	}
	jc, err := jobs.ParseConfig(name, data)
	if err != nil {
		return nil, nil, err
	}
	policy, err := access.ParsePolicy(name, data, func(job string) bool { _, err := jc.Job(job); return err == nil })
	if err != nil {
		return nil, nil, err
	}
	return jc, policy, nil
}

// serve runs the dashboard until ctx ends.
func serve(ctx context.Context, cfg Config, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	jobCfg, policy, err := loadConfig(cfg, log)
	if err != nil {
		return err
	}
	addr := cfg.Addr
	if cfg.Listener != nil {
		addr = cfg.Listener.Addr().String()
	}
	if policy.Open() && !loopback(addr) {
		if !cfg.Insecure {
			return fmt.Errorf("%s: %w", addr, errOpenOnNetwork)
		}
		log.Warn("serving without tokens on a network address (--insecure): anyone who can reach it can run jobs", "addr", addr)
	}
	hub := streams.NewHub(log)
	durations := newDurations()
	n, err := openNode(ctx, cfg, jobCfg, log, nodeHooks{
		closed:   func(id, size int64) { hub.Finish(streams.Key(id), size) },
		partial:  func(id, at int64, text []byte) { hub.Partial(streams.Key(id), at, text) },
		finished: func(run *jobs.Run) { durations.observe(run.Duration(time.Now())) },
	})
	if err != nil {
		return err
	}
	defer n.close()
	sessions, err := access.LoadSessions(filepath.Join(cfg.DataDir, "session.key"), sessionTTL)
	if err != nil {
		return err
	}
	eng, runner, shipper := n.eng, n.runner, n.shipper
	copies := newLogCopies(n.shipCtx, eng, hub, runner, n.name, log) //nolint:contextcheck // see openNode
	n.follow(nil)

	ln := cfg.Listener
	if ln == nil {
		ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Addr)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	srv := newServer(runner, hub, policy, sessions, log)
	srv.limits = cfg.Limits
	srv.trustedProxies = cfg.TrustedProxies
	srv.searchBudget = cfg.SearchBudget
	if srv.hosts, err = newHostPolicy(ln.Addr().String(), cfg.PublicURL, cfg.AllowedHosts); err != nil {
		return err
	}
	if cfg.PublicURL != "" {
		u, _ := url.Parse(cfg.PublicURL) // checked by newHostPolicy
		srv.publicOrigin = u.Scheme + "://" + u.Host
	}
	srv.durations = durations
	srv.engine, srv.shipper, srv.copies, srv.node = eng, shipper, copies, n.name
	ln = limitConnections(ln, connectionCap(cfg.MaxConnections, raiseFileLimit()), log)
	httpSrv := &http.Server{
		Handler:           srv.routes(),
		ReadHeaderTimeout: cmp.Or(cfg.HeaderTimeout, 10*time.Second),
		ReadTimeout:       readTimeout,
		WriteTimeout:      cmp.Or(cfg.WriteTimeout, writeTimeout),
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		// Load now, so a bad certificate is an error at start, not at the
		// first request.
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		// HTTP/2 lets one browser hold many live logs on one connection.
		httpSrv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
		ln = tls.NewListener(ln, httpSrv.TLSConfig)
		scheme = "https"
	}
	base := scheme + "://" + ln.Addr().String()
	log.Info("shiplog is serving", "url", base, "jobs", len(jobCfg.Jobs), "data", cfg.DataDir)
	if cfg.Ready != nil {
		cfg.Ready <- base
	}

	runCtx, stopRunner := context.WithCancel(context.WithoutCancel(ctx))
	runnerDone := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { defer close(runnerDone); return runner.Run(runCtx) })
	g.Go(func() error {
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: no new runs; running runs may finish", "grace", cfg.ShutdownGrace)
		// Pages, status and streams keep serving while running runs finish
		// (or are stopped at the end of the grace period); then streams end
		// with a shutdown event and the server closes.
		stopRunner()
		<-runnerDone
		hub.Close()
		n.stopShipping()
		copies.Wait()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := httpSrv.Shutdown(shutdownCtx); err != nil {
			log.Warn("connections still open after 5s; closing them", "err", err)
			_ = httpSrv.Close()
		}
		// Event streams own their connections: each has said its last
		// word (end or shutdown, within a second) before the process ends.
		srv.streamsWG.Wait()
		return nil
	})
	return g.Wait()
}

// logSizes returns the size of each run's log in dir, by run id.
func logSizes(dir string) (map[int64]int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	sizes := map[int64]int64{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		id, err := strconv.ParseInt(name, 10, 64)
		if !ok || err != nil || id <= 0 || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil {
			sizes[id] = fi.Size()
		}
	}
	return sizes, nil
}

// readToken reads the engine's shared token from path ("" if no path).
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--nats-token-file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("--nats-token-file %s is empty", path)
	}
	return token, nil
}

// engineQueue is the engine as the runner's queue.
type engineQueue struct{ *engine.Engine }

func (q engineQueue) Take(ctx context.Context, zone string, room func() bool, roomed <-chan struct{}, take func(jobs.Lease)) error {
	return q.Engine.Take(ctx, zone, room, roomed, func(l *engine.Lease) { take(l) })
}
