package main

import (
	"strconv"
	"time"

	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/jobs"
)

// toRunJSON is the API's view of run r at now.
func toRunJSON(r *jobs.Run, now time.Time) api.Run {
	id := strconv.FormatInt(r.ID, 10)
	out := api.Run{
		ID:          r.ID,
		Job:         r.Job,
		Params:      r.Params,
		State:       api.State(r.State),
		ExitCode:    r.ExitCode,
		Error:       r.Error,
		Annotations: make([]api.Annotation, 0, len(r.Annotations)),
		TriggeredBy: r.TriggeredBy,
		Node:        r.Node,
		Environment: r.Environment,
		Version:     r.Version,
		RerunOf:     r.RerunOf,
		QueuedAt:    r.QueuedAt,
		StartedAt:   r.StartedAt,
		FinishedAt:  r.FinishedAt,
		Links: api.Links{
			Page:   "/runs/" + id,
			Log:    "/api/runs/" + id + "/log",
			Events: "/api/runs/" + id + "/events",
		},
	}
	for _, a := range r.Annotations {
		out.Annotations = append(out.Annotations, api.Annotation(a))
	}
	if r.OpenGate() != nil {
		out.State = api.Waiting
	}
	out.Gates = make([]api.Gate, 0, len(r.Gates))
	for _, g := range r.Gates {
		out.Gates = append(out.Gates, toGateJSON(g))
	}
	out.Groups = make([]api.Group, 0, len(r.Groups))
	for _, g := range r.Groups {
		ag := api.Group{Title: g.Title, Line: g.Line, EndLine: g.EndLine, Depth: g.Depth, Start: g.Start, End: g.End, Outcome: api.State(r.GroupOutcome(g))}
		if g.End != nil {
			d := g.End.Sub(g.Start).Milliseconds()
			ag.DurationMS = &d
		}
		out.Groups = append(out.Groups, ag)
	}
	if r.State.Finished() {
		out.Log = &api.Log{Bytes: r.LogBytes, Lines: r.LogLines, Cut: r.LogCut}
	}
	if r.Progress != nil {
		out.Progress = api.Progress(*r.Progress)
	}
	if r.Wait != nil && r.State == jobs.Queued {
		w := api.Wait(*r.Wait)
		out.Wait = &w
	}
	if r.StartedAt != nil && r.FinishedAt != nil {
		d := r.Duration(now).Milliseconds()
		out.DurationMS = &d
	}
	return out
}

func toJobJSON(j *jobs.Job, last *jobs.Run, now time.Time) api.Job {
	out := api.Job{Name: j.Name, Description: j.Description, Lock: j.Lock, Confirm: j.Confirm, Params: []api.Param{}}
	if j.Timeout > 0 {
		out.Timeout = j.Timeout.String()
	}
	for _, p := range j.Params {
		out.Params = append(out.Params, api.Param{Name: p.Name, Description: p.Description, Required: p.Required, Default: p.Default, Choices: p.Choices, Pattern: p.Pattern})
	}
	if last != nil {
		rj := toRunJSON(last, now)
		out.LastRun = &rj
	}
	return out
}
