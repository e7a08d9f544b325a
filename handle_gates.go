package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/shiplog/shiplog/access"
	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/jobs"
)

// mayAnswer checks that the caller may answer run's gate: one of its
// approvers when the job lists them (an admin always), else whoever may
// run the job. four_eyes is the runner's to check, where the run runs.
func mayAnswer(c echo.Context, run *jobs.Run) error {
	p := principal(c)
	if p == nil {
		return errForbidden
	}
	g := run.OpenGate()
	if g == nil {
		return fmt.Errorf("%w: #%d waits at no gate", jobs.ErrNoGate, run.ID)
	}
	if len(g.Approvers) > 0 && p != access.Anonymous && p.Role != access.Admin {
		if !slices.Contains(g.Approvers, p.Name) {
			return &apiError{status: http.StatusForbidden, msg: "only " + strings.Join(g.Approvers, ", ") + " may answer this gate"}
		}
		return nil
	}
	return mayRun(c, run.Job)
}

// decideByRequest answers the gate run :id waits at, if the caller may.
func (s *server) decideByRequest(c echo.Context, decision, reason string) (int64, error) {
	id, err := runID(c)
	if err != nil {
		return 0, err
	}
	var d jobs.Decision
	switch decision {
	case "approve":
		d = jobs.Approved
	case "reject":
		d = jobs.Rejected
	default:
		return id, badRequest("decision", "decision: want approve or reject")
	}
	if len(reason) > 500 {
		return id, badRequest("reason", "reason: at most 500 bytes")
	}
	run, err := s.runner.Get(c.Request().Context(), id)
	if err != nil {
		return id, err
	}
	if err := mayAnswer(c, run); err != nil {
		return id, err
	}
	return id, s.runner.Decide(c.Request().Context(), id, 0, d, triggeredBy(c), reason)
}

// answerGate: POST /api/runs/:id/gate {"decision": "approve"|"reject",
// "reason": "…"}.
func (s *server) answerGate(c echo.Context) error {
	var in api.GateAnswer
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, 8<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return badRequest("", "a JSON object {\"decision\": \"approve\" or \"reject\", \"reason\": \"…\"}: %v", err)
	}
	id, err := s.decideByRequest(c, in.Decision, in.Reason)
	if err != nil {
		return err
	}
	body, _, err := s.runBody(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, body)
}

// answerGateForm is the run page's Approve and Reject.
func (s *server) answerGateForm(c echo.Context) error {
	id, err := s.decideByRequest(c, c.FormValue("decision"), strings.TrimSpace(c.FormValue("reason")))
	if err != nil && !errors.Is(err, jobs.ErrNoGate) {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/runs/"+strconv.FormatInt(id, 10))
}

// toGateJSON is the API's view of gate g.
func toGateJSON(g jobs.Gate) api.Gate {
	return api.Gate{
		ID: g.ID, Question: g.Question, AskedAt: g.AskedAt, Deadline: g.Deadline, Line: g.Line,
		Approvers: g.Approvers, FourEyes: g.FourEyes,
		Decision: string(g.Decision), By: g.By, Reason: g.Reason, DecidedAt: g.DecidedAt,
	}
}

// listDeliveries: GET /api/runs/:id/deliveries, the run's notification
// attempts, oldest first (targets without their secrets).
func (s *server) listDeliveries(c echo.Context) error {
	id, err := runID(c)
	if err != nil {
		return err
	}
	if _, err := s.runner.Get(c.Request().Context(), id); err != nil {
		return err
	}
	list, err := s.deliveries(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, list)
}

// deliveries reads run id's delivery log from the engine.
func (s *server) deliveries(ctx context.Context, id int64) ([]api.Delivery, error) {
	if s.engine == nil {
		return []api.Delivery{}, nil
	}
	list, err := s.engine.Deliveries(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]api.Delivery, 0, len(list))
	for _, a := range list {
		out = append(out, api.Delivery(a))
	}
	return out, nil
}
