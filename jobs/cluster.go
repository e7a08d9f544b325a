package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Runs are queued in the engine's work queue (engine.Engine through
// Queue): any node may trigger, re-run or cancel a run, and the runners
// of the job's zone take runs from the queue as they reach the head of
// their line. A run's record says which node runs it.

// Queue is the cluster's queue of runs, and the requests between nodes.
type Queue interface {
	// Enqueue puts run id at the end of the line of lock ("": none) in
	// zone.
	Enqueue(ctx context.Context, zone, lock string, id int64) error
	// Take hands the runs of zone to take as they reach the heads of
	// their lines, until ctx ends; a run without a lock only while room
	// says so (roomed is signalled when it may have changed).
	Take(ctx context.Context, zone string, room func() bool, roomed <-chan struct{}, take func(Lease)) error
	// Request sends req on subject and returns the answer.
	Request(ctx context.Context, subject string, req []byte) ([]byte, error)
	// Handle answers requests on subject with fn until ctx ends.
	Handle(ctx context.Context, subject string, fn func(ctx context.Context, req []byte) []byte) error
}

// Lease is a run taken from the queue (engine.Lease).
type Lease interface {
	RunID() int64
	// Redelivered says the run was handed out before, to a runner that
	// stopped renewing its lease.
	Redelivered() bool
	Renew() error
	// Done takes the run off the queue for good.
	Done(ctx context.Context) error
	// Release puts it back at the head of its line.
	Release() error
}

// stale reports whether err is a write refused because the record moved
// on (engine.ErrStale).
func stale(err error) bool {
	var s interface{ Stale() bool }
	return errors.As(err, &s) && s.Stale()
}

// cancelSubject is where the runner running run id takes its cancel.
func cancelSubject(id int64) string { return "shiplog.run." + strconv.FormatInt(id, 10) + ".cancel" }

func decideSubject(id int64) string { return "shiplog.run." + strconv.FormatInt(id, 10) + ".decide" }

// gateDecision is an answer to a gate, sent to the node running the run.
type gateDecision struct {
	Gate     int      `json:"gate"`
	Decision Decision `json:"decision"`
	By       string   `json:"by"`
	Reason   string   `json:"reason"`
}

// serveDecide takes answers to the gates of run id, which this runner
// runs, from other nodes.
func (r *Runner) serveDecide(ctx context.Context, id int64) {
	err := r.opts.Queue.Handle(ctx, decideSubject(id), func(ctx context.Context, req []byte) []byte {
		var (
			d     gateDecision
			reply actionReply
		)
		if err := json.Unmarshal(req, &d); err != nil {
			reply.Error = encodeActionError(err)
		} else if err := r.decideHere(id, d.Gate, d.Decision, d.By, d.Reason); err != nil { //nolint:contextcheck // the answer is stored even if its request goes away
			reply.Error = encodeActionError(err)
		}
		out, _ := json.Marshal(reply) // nothing in it fails to encode
		return out
	})
	if err != nil {
		r.log.Warn("take gate answers of a run from other nodes", "run_id", id, "err", err)
	}
}

// decideThere sends an answer to the node running run.
func (r *Runner) decideThere(ctx context.Context, run *Run, d gateDecision) error {
	if run.OpenGate() == nil {
		return fmt.Errorf("%w: #%d waits at no gate", ErrNoGate, run.ID)
	}
	req, _ := json.Marshal(d) // nothing in it fails to encode
	out, err := r.opts.Queue.Request(ctx, decideSubject(run.ID), req)
	if err != nil {
		return fmt.Errorf("%w: #%d runs on %s, which does not answer (%w)", ErrNoRunner, run.ID, cmp.Or(run.Node, "another node"), err)
	}
	var reply actionReply
	if err := json.Unmarshal(out, &reply); err != nil {
		return fmt.Errorf("the runner's answer: %w", err)
	}
	if reply.Error != nil {
		return reply.Error.err()
	}
	return nil
}

type actionReply struct {
	Error *actionError `json:"error,omitempty"`
}

// actionError carries an error's kind, so the node asked answers its
// client as the node running the run would have.
type actionError struct {
	Kind  string `json:"kind"`
	Msg   string `json:"msg"`
	Field string `json:"field,omitempty"`
}

var errKinds = []struct {
	kind string
	err  error
}{
	{"unknown_job", ErrUnknownJob},
	{"not_found", ErrNotFound},
	{"finished", ErrFinished},
	{"no_space", ErrNoSpace},
	{"shutting_down", ErrShuttingDown},
	{"no_gate", ErrNoGate},
	{"four_eyes", ErrFourEyes},
}

func encodeActionError(err error) *actionError {
	var pe *ParamError
	if errors.As(err, &pe) {
		return &actionError{Kind: "param", Msg: pe.Msg, Field: pe.Field}
	}
	for _, k := range errKinds {
		if errors.Is(err, k.err) {
			return &actionError{Kind: k.kind, Msg: err.Error()}
		}
	}
	return &actionError{Kind: "other", Msg: err.Error()}
}

// remoteError is an error the node running a run answered with.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func (e *actionError) err() error {
	if e.Kind == "param" {
		return &ParamError{Field: e.Field, Msg: e.Msg}
	}
	for _, k := range errKinds {
		if e.Kind == k.kind {
			return &remoteError{msg: e.Msg, kind: k.err}
		}
	}
	return fmt.Errorf("the runner: %s", e.Msg)
}

// serveCancel takes cancels of run id, which this runner runs, from other
// nodes until ctx ends.
func (r *Runner) serveCancel(ctx context.Context, id int64) {
	err := r.opts.Queue.Handle(ctx, cancelSubject(id), func(ctx context.Context, req []byte) []byte {
		var reply actionReply
		if err := r.Cancel(ctx, id, string(req)); err != nil {
			reply.Error = encodeActionError(err)
		}
		out, _ := json.Marshal(reply) // nothing in it fails to encode
		return out
	})
	if err != nil {
		r.log.Warn("take cancels of a run from other nodes", "run_id", id, "err", err)
	}
}

// cancelThere asks the node running run id to cancel it.
func (r *Runner) cancelThere(ctx context.Context, run *Run, by string) error {
	out, err := r.opts.Queue.Request(ctx, cancelSubject(run.ID), []byte(by))
	if err != nil {
		return fmt.Errorf("%w: #%d runs on %s, which does not answer (%w); if it is gone, the run is marked interrupted when its lease lapses", ErrNoRunner, run.ID, cmp.Or(run.Node, "another node"), err)
	}
	var reply actionReply
	if err := json.Unmarshal(out, &reply); err != nil {
		return fmt.Errorf("the runner's answer: %w", err)
	}
	if reply.Error != nil {
		return reply.Error.err()
	}
	return nil
}
