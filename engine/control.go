package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Requests between nodes (a cancel, to the node running the run) travel
// as plain NATS request and reply: answered by whoever serves the subject
// now, or by no one, and never queued for later.

// ErrNoResponder says no one serves a request's subject: the node it is
// for is not connected to the engine.
var ErrNoResponder = errors.New("no one answers on the engine")

// Handle answers requests on subject with fn until ctx ends. The
// requests are answered one at a time, in the order they came.
func (e *Engine) Handle(ctx context.Context, subject string, fn func(ctx context.Context, req []byte) []byte) error {
	sub, err := e.nc.QueueSubscribe(subject, "shiplog", func(m *nats.Msg) {
		if err := m.Respond(fn(ctx, m.Data)); err != nil {
			e.log.Warn("answer a request", "subject", subject, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("serve %s: %w", subject, err)
	}
	// The subscription is in place once the server has it: a request
	// sent after Handle returns finds it.
	if err := e.nc.FlushTimeout(startTimeout); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("serve %s: %w", subject, err)
	}
	go func() {
		<-ctx.Done()
		_ = sub.Drain()
	}()
	return nil
}

// ErrUnreachable says the engine cannot be reached now; the connection
// is being retried.
var ErrUnreachable = errors.New("the engine cannot be reached")

// requestTimeout bounds a request: an action answered later than this
// is not worth waiting for.
const requestTimeout = 10 * time.Second

// Request sends req on subject and returns the answer.
func (e *Engine) Request(ctx context.Context, subject string, req []byte) ([]byte, error) {
	if !e.nc.IsConnected() {
		// A request now would wait in the reconnect buffer.
		return nil, ErrUnreachable
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	m, err := e.nc.RequestWithContext(ctx, subject, req)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, ErrNoResponder
	}
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", subject, err)
	}
	return m.Data, nil
}

// Connected reports whether the engine can be reached now.
func (e *Engine) Connected() bool { return e.nc.IsConnected() }
