// Package engine runs, or connects to, the NATS JetStream server that
// shiplog's replicas and runners share, and holds what shiplog keeps in
// it. By default the server is embedded in the process, with its store in
// the data directory and no network listener: a single node needs nothing
// else. See the README's "Running more than one".
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says which engine to use.
type Config struct {
	// Dir holds the embedded server's store. Unused with URL.
	Dir string
	// Listen, if set, is where the embedded server accepts remote runners
	// and replicas (host:port). A listener that is not on loopback needs
	// Token.
	Listen string
	// URL, if set, is an external NATS server or cluster to connect to
	// instead of embedding one (nats://host:4222, comma-separated for
	// several).
	URL string
	// Token authenticates to the engine: required of clients by an
	// embedded server that listens, sent to an external one.
	Token string
	// TLS: the embedded listener's certificate and key; for a client of
	// an engine elsewhere, the CA its certificates are checked against.
	TLS TLS
	// Logger receives the engine's warnings and errors.
	Logger *slog.Logger
	// Replicas is how many nodes of a cluster keep each of shiplog's
	// streams: 0 means 3 when the engine is a cluster, 1 otherwise. A
	// stream that exists keeps its number.
	Replicas int
	// Lease is how long a runner may go without renewing its lease on a
	// run (DefaultLease if zero). Every process of a cluster must agree.
	Lease time.Duration
}

// Engine is a connection to JetStream and, when embedded, its server.
type Engine struct {
	srv  *server.Server // nil with an external engine
	nc   *nats.Conn
	js   jetstream.JetStream
	logs jetstream.Stream
	runs jetstream.KeyValue
	// deliveries holds each run's notification attempts (deliveries.go).
	deliveries jetstream.KeyValue
	log        *slog.Logger

	work      jetstream.Stream
	lease     time.Duration
	lines     sync.Map // names of the work queue's lines this process opened
	workIsNew bool

	closed  chan struct{} // closed with the connection
	shipped atomic.Int64  // log bytes the stream acknowledged
	slow    atomic.Int64  // times the client dropped messages it could not keep up with

	storeDir string // the embedded server's
}

// ErrFull says the engine's store has no room: the disk under it is full.
// It wraps syscall.ENOSPC, as a full disk's write errors do.
var ErrFull = fmt.Errorf("the engine's store is full: %w", syscall.ENOSPC)

// minFree is the room the embedded store keeps on its disk. The server
// marks a stream broken at its first write that finds the disk full, and
// the stream takes no write until the server restarts: so shiplog does
// not write when the disk is that close to full, and says so instead.
const minFree = 1 << 20

// room reports ErrFull when the embedded store's disk has less than
// minFree besides n bytes free. An external engine keeps its own disks.
func (e *Engine) room(n int) error {
	if e.srv == nil {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(e.storeDir, &st); err != nil {
		return nil // the write will say what is wrong
	}
	if free := st.Bavail * uint64(st.Bsize); free < uint64(n)+minFree {
		return ErrFull
	}
	return nil
}

// full maps the engine's "insufficient resources" to ErrFull.
func full(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.ErrorCode(server.JSInsufficientResourcesErr) {
		return fmt.Errorf("%w: %w", ErrFull, err)
	}
	return err
}

// SlowConsumers returns how many times this process fell so far behind
// a subscription that the client dropped messages (copies and shipments
// recover from it; it should stay 0).
func (e *Engine) SlowConsumers() int64 { return e.slow.Load() }

// ShippedBytes returns how many log bytes this process has sent to the
// stream.
func (e *Engine) ShippedBytes() int64 { return e.shipped.Load() }

// startTimeout bounds the embedded server's start and the first
// connection: a store being recovered after a crash can take a while.
const startTimeout = 30 * time.Second

// Start starts the embedded engine, or connects to the external one, and
// makes sure the streams shiplog uses exist.
func Start(ctx context.Context, cfg Config) (*Engine, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{log: log, closed: make(chan struct{}), lease: cmp.Or(cfg.Lease, DefaultLease)}
	var err error
	if cfg.URL != "" {
		opts := append(e.connOptions(), nats.MaxReconnects(-1), nats.Timeout(5*time.Second))
		if cfg.Token != "" {
			opts = append(opts, nats.Token(cfg.Token))
		}
		if cfg.TLS.CA != "" {
			if _, err := loadCA(cfg.TLS.CA); err != nil {
				return nil, err
			}
			opts = append(opts, nats.RootCAs(cfg.TLS.CA))
		}
		if e.nc, err = nats.Connect(cfg.URL, opts...); err != nil {
			return nil, fmt.Errorf("connect to the engine at %s: %w", cfg.URL, err)
		}
	} else if err := e.embed(cfg); err != nil {
		return nil, err
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		e.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	replicas := cfg.Replicas
	if replicas == 0 {
		replicas = 1
		if e.nc.ConnectedClusterName() != "" {
			replicas = 3
		}
	}
	// A cluster that is starting too may not have elected its leaders
	// yet: ask again until the start timeout.
	err = retry(ctx, e.log, func(ctx context.Context) error {
		var err error
		if e.logs, _, err = e.stream(ctx, logsStream, replicas); err != nil {
			return err
		}
		if e.runs, err = e.bucket(ctx, runsBucket, replicas); err != nil {
			return err
		}
		if e.deliveries, err = e.bucket(ctx, deliveriesBucket, replicas); err != nil {
			return err
		}
		e.work, e.workIsNew, err = e.stream(ctx, workStream, replicas)
		return err
	})
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// retry calls f until it succeeds or ctx ends, and returns its last error.
// Each call has a few seconds: a cluster without a leader yet leaves
// requests unanswered rather than refused.
func retry(ctx context.Context, log *slog.Logger, f func(context.Context) error) error {
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		log.Warn("the engine is not ready; retrying", "err", err)
		if !sleep(ctx, backoff) {
			return err
		}
	}
}

// stream creates the stream of cfg with replicas copies, or updates it
// keeping the copies it has: replicas and runners started with different
// ideas of the cluster's size must not resize it back and forth. It
// reports whether the stream is new.
func (e *Engine) stream(ctx context.Context, cfg jetstream.StreamConfig, replicas int) (jetstream.Stream, bool, error) {
	cfg.Replicas = replicas
	old, err := e.js.Stream(ctx, cfg.Name)
	switch {
	case err == nil:
		cfg.Replicas = old.CachedInfo().Config.Replicas
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, false, fmt.Errorf("read the %s stream: %w", cfg.Name, err)
	}
	s, err := e.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("create the %s stream with %d copies: %w", cfg.Name, cfg.Replicas, err)
	}
	return s, old == nil, nil
}

// bucket is stream for a key-value bucket.
func (e *Engine) bucket(ctx context.Context, cfg jetstream.KeyValueConfig, replicas int) (jetstream.KeyValue, error) {
	cfg.Replicas = replicas
	old, err := e.js.KeyValue(ctx, cfg.Bucket)
	switch {
	case err == nil:
		st, err := old.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the %s bucket: %w", cfg.Bucket, err)
		}
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
			cfg.Replicas = bs.StreamInfo().Config.Replicas
		}
	case !errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, fmt.Errorf("read the %s bucket: %w", cfg.Bucket, err)
	}
	kv, err := e.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create the %s bucket with %d copies: %w", cfg.Bucket, cfg.Replicas, err)
	}
	return kv, nil
}

func (e *Engine) embed(cfg Config) error {
	opts := &server.Options{
		ServerName: "shiplog",
		JetStream:  true,
		StoreDir:   cfg.Dir,
		NoSigs:     true,
		NoLog:      true,
		DontListen: true,
		// The largest message shiplog sends is a log batch (maxBatch)
		// plus its headers.
		MaxPayload: maxPayload,
	}
	if cfg.Listen != "" {
		host, port, err := hostPort("--nats-listen", cfg.Listen)
		if err != nil {
			return err
		}
		if cfg.Token == "" && !loopback(host) {
			return fmt.Errorf("--nats-listen %s is not on loopback: set a token (--nats-token-file) so that only your runners and replicas connect", cfg.Listen)
		}
		opts.DontListen, opts.Host, opts.Port, opts.Authorization = false, host, port, cfg.Token
		tc, err := cfg.TLS.serverConfig()
		if err != nil {
			return err
		}
		if tc != nil {
			opts.TLSConfig, opts.TLS, opts.TLSTimeout = tc, true, 5
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(startTimeout) {
		srv.Shutdown()
		return errors.New("engine: the embedded server did not start")
	}
	e.srv, e.storeDir = srv, cfg.Dir
	nc, err := nats.Connect("", append(e.connOptions(), nats.InProcessServer(srv), nats.Token(cfg.Token))...)
	if err != nil {
		srv.Shutdown()
		return fmt.Errorf("connect to the embedded engine: %w", err)
	}
	e.nc = nc
	return nil
}

func (e *Engine) connOptions() []nats.Option {
	return []nats.Option{
		nats.Name("shiplog"),
		nats.ClosedHandler(func(*nats.Conn) { close(e.closed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				e.log.Warn("engine connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { e.log.Info("engine connection back") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				e.slow.Add(1)
				subject := ""
				if sub != nil {
					subject = sub.Subject
				}
				e.log.Warn("engine messages dropped: this process fell behind", "subject", subject)
				return
			}
			e.log.Warn("engine", "err", err)
		}),
	}
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ClientURL is where remote runners and replicas reach an embedded engine
// that listens ("" if it does not).
func (e *Engine) ClientURL() string {
	if e.srv == nil {
		return ""
	}
	addr := e.srv.Addr()
	if addr == nil {
		return ""
	}
	return (&url.URL{Scheme: "nats", Host: addr.String()}).String()
}

// Close drains the connection and stops an embedded server.
func (e *Engine) Close() {
	if e.nc != nil {
		// Drain sends what is buffered and closes the connection, in
		// the background and with its own timeout.
		if err := e.nc.Drain(); err != nil {
			e.nc.Close()
		}
		<-e.closed
	}
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
	}
}
