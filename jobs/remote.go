package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// A replica that runs no jobs itself sends triggers, re-runs and cancels
// to the node that does, over the engine, and shows what that node
// records. Its Runner is made with RunnerOptions.Remote.

// Remote carries a replica's requests to the node that runs jobs.
type Remote interface {
	Request(ctx context.Context, subject string, req []byte) ([]byte, error)
}

// Responder answers requests on a subject (the engine does).
type Responder interface {
	Handle(ctx context.Context, subject string, fn func(ctx context.Context, req []byte) []byte) error
}

// actionSubject carries replicas' actions to the runner.
const actionSubject = "shiplog.runner.actions"

type action struct {
	Op      string            `json:"op"` // trigger, rerun or cancel
	Job     string            `json:"job,omitempty"`
	Params  map[string]string `json:"params,omitempty"`
	ID      int64             `json:"id,omitempty"`
	By      string            `json:"by"`
	RerunOf int64             `json:"rerun_of,omitempty"`
}

type actionReply struct {
	Run   json.RawMessage `json:"run,omitempty"` // a record
	Error *actionError    `json:"error,omitempty"`
}

// actionError carries an error's kind, so the replica answers its client
// as the runner's node would have.
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

// remoteError is an error the runner's node answered with.
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

// ServeActions answers replicas' actions with this runner until ctx ends.
func (r *Runner) ServeActions(ctx context.Context, resp Responder) error {
	return resp.Handle(ctx, actionSubject, func(ctx context.Context, req []byte) []byte {
		var a action
		var run *Run
		err := json.Unmarshal(req, &a)
		if err == nil {
			switch a.Op {
			case "trigger":
				run, err = r.trigger(ctx, a.Job, a.Params, a.By, a.RerunOf)
			case "rerun":
				run, err = r.Rerun(ctx, a.ID, a.By)
			case "cancel":
				err = r.Cancel(ctx, a.ID, a.By)
			default:
				err = fmt.Errorf("unknown action %q", a.Op)
			}
		}
		var reply actionReply
		if err != nil {
			reply.Error = encodeActionError(err)
		} else if run != nil {
			if reply.Run, err = encodeRecord(run); err != nil {
				reply.Error = encodeActionError(err)
			}
		}
		out, _ := json.Marshal(reply) // nothing in it fails to encode
		return out
	})
}

// ask sends a to the runner's node and returns the run it answered with.
func (r *Runner) ask(ctx context.Context, a action) (*Run, error) {
	req, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode action: %w", err)
	}
	out, err := r.opts.Remote.Request(ctx, actionSubject, req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoRunner, err)
	}
	var reply actionReply
	if err := json.Unmarshal(out, &reply); err != nil {
		return nil, fmt.Errorf("the runner's answer: %w", err)
	}
	if reply.Error != nil {
		return nil, reply.Error.err()
	}
	if reply.Run == nil {
		return nil, nil
	}
	return decodeRecord(reply.Run)
}
