// Package api is shiplog's HTTP API as a Go program sees it: the JSON
// types the server answers with, and a Client that triggers runs, reads
// their state and follows their logs, resuming across dropped connections.
// The shiplog CLI is built on it; the README's API section documents the
// same endpoints for other languages.
package api

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// State is where a run is in its life.
type State string

// The states of a run. Only Queued and Running are not final.
const (
	Queued  State = "queued"
	Running State = "running"
	// Waiting is a running run stopped at a gate until someone answers.
	Waiting     State = "waiting"
	Succeeded   State = "succeeded"
	Failed      State = "failed"
	Canceled    State = "canceled"
	TimedOut    State = "timed_out"
	Interrupted State = "interrupted"
)

// Finished reports whether the state is final.
func (s State) Finished() bool { return s != Queued && s != Running && s != Waiting }

// Run is a run of a job (GET /api/runs/{id}).
type Run struct {
	ID          int64             `json:"id"`
	Job         string            `json:"job"`
	Params      map[string]string `json:"params"`
	State       State             `json:"state"`
	ExitCode    *int              `json:"exit_code"`
	Error       string            `json:"error,omitempty"` // why it failed, when not the command's own doing
	Annotations []Annotation      `json:"annotations"`
	// Gates are the questions the run's script stopped at (shiplog gate),
	// in order; while the last is open the run is waiting.
	Gates []Gate `json:"gates"`
	// Groups are the run's ::group:: sections, in order: its timeline.
	Groups      []Group `json:"groups"`
	TriggeredBy string  `json:"triggered_by"`
	// Environment and Version are what the run deploys, when its job
	// says (deploys).
	Environment string `json:"environment,omitempty"`
	Version     string `json:"version,omitempty"`
	// Node names the shiplog process that runs or ran the run (absent
	// while it is queued).
	Node       string     `json:"node,omitempty"`
	RerunOf    int64      `json:"rerun_of,omitempty"`
	QueuedAt   time.Time  `json:"queued_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	// DurationMS is null until the run has finished: compute a running
	// run's from StartedAt, so that its ETag does not move every moment.
	DurationMS *int64 `json:"duration_ms"`
	// Log is there once the run has finished. While it runs, its size and
	// line count change with every line: they are in the X-Log-Bytes and
	// X-Log-Lines headers instead, so the ETag moves only with state,
	// progress and annotations, and polls stay cheap 304s.
	Log      *Log     `json:"log,omitempty"`
	Links    Links    `json:"links"`
	Progress Progress `json:"progress"`
	// Wait is there while the run is queued: what it waits for.
	Wait *Wait `json:"wait,omitempty"`
}

// Wait says why a queued run has not started: its place in line, and the
// lock another run holds or, with no Lock, a free slot (the server's
// max_concurrent_runs).
type Wait struct {
	Position int    `json:"position"` // 1: next to start
	Lock     string `json:"lock,omitempty"`
	// The run holding Lock: its id, who triggered it and when it started
	// (absent for a moment while it starts).
	Holder      int64      `json:"holder,omitempty"`
	HolderBy    string     `json:"holder_by,omitempty"`
	HolderSince *time.Time `json:"holder_since,omitempty"`
}

// Progress is the latest ::progress:: a run reported.
type Progress struct {
	Percent int    `json:"percent"`
	Message string `json:"message"`
}

// Annotation is a ::notice::, ::warning:: or ::error:: a run printed.
type Annotation struct {
	Level   string `json:"level"` // notice, warning or error
	Message string `json:"message"`
	Title   string `json:"title,omitempty"`
	Line    int64  `json:"line"` // 1-based line in the log
	// Where in the source it points, as the command's file, line, endLine,
	// col and endColumn properties said (0 or "" when not said).
	File        string `json:"file,omitempty"`
	StartLine   int    `json:"start_line,omitempty"`
	EndLine     int    `json:"end_line,omitempty"`
	StartColumn int    `json:"start_column,omitempty"`
	EndColumn   int    `json:"end_column,omitempty"`
}

// Environment is what is deployed to one environment (GET
// /api/environments): its last successful deploy, the runs on their way
// there (oldest first), and its latest runs (newest first).
type Environment struct {
	Name      string `json:"name"`
	Current   *Run   `json:"current"`
	Deploying []Run  `json:"deploying"`
	History   []Run  `json:"history"`
}

// Gate is a question a run's script asked, and its answer once given.
type Gate struct {
	ID       int       `json:"id"`
	Question string    `json:"question"`
	AskedAt  time.Time `json:"asked_at"`
	Deadline time.Time `json:"deadline"`
	Line     int64     `json:"line"` // log lines before it
	// Who may answer: these names, or (none listed) whoever may run the
	// job; with FourEyes, not the person who triggered the run.
	Approvers []string `json:"approvers,omitempty"`
	FourEyes  bool     `json:"four_eyes,omitempty"`
	// Decision is approved, rejected, timed_out or ended (the run ended
	// while it waited); absent while open.
	Decision  string     `json:"decision,omitempty"`
	By        string     `json:"by,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
}

// Delivery is one attempt to deliver a notification of a run (GET
// /api/runs/{id}/deliveries).
type Delivery struct {
	Delivery string    `json:"delivery"` // the notification's id, the same for its retries
	Event    string    `json:"event"`
	Target   string    `json:"target"` // scheme and host: a webhook URL's path may be its secret
	Try      int       `json:"try"`
	At       time.Time `json:"at"`
	Status   int       `json:"status,omitempty"` // the receiver's HTTP answer; absent if none came
	Error    string    `json:"error,omitempty"`
	MS       int64     `json:"ms"`
	Final    bool      `json:"final,omitempty"` // no retry follows
}

// GateAnswer is the body of POST /api/runs/{id}/gate.
type GateAnswer struct {
	Decision string `json:"decision"` // approve or reject
	Reason   string `json:"reason,omitempty"`
}

// Group is a ::group:: section of a run's log.
type Group struct {
	Title   string     `json:"title"`
	Line    int64      `json:"line"`               // its ::group:: line
	EndLine int64      `json:"end_line,omitempty"` // its ::endgroup:: line; absent while open
	Depth   int        `json:"depth"`              // how many groups it is in
	Start   time.Time  `json:"start"`
	End     *time.Time `json:"end,omitempty"`
	// DurationMS is there once the group has ended.
	DurationMS *int64 `json:"duration_ms,omitempty"`
	// Outcome: running while open; the run's state if the run ended
	// inside it; failed if an ::error:: was printed inside it; else
	// succeeded.
	Outcome State `json:"outcome"`
}

// Log is the size of a finished run's log.
type Log struct {
	Bytes int64 `json:"bytes"`
	Lines int64 `json:"lines"`
	Cut   bool  `json:"cut"` // cut at the job's max_log_size
}

// Links are the run's page and endpoints, relative to the server.
type Links struct {
	Page   string `json:"page"`
	Log    string `json:"log"`
	Events string `json:"events"`
}

// RunList is a page of runs (GET /api/runs), newest first; Next is the
// query of the next page, if any.
type RunList struct {
	Runs []Run  `json:"runs"`
	Next string `json:"next,omitempty"`
}

// Job is a job as GET /api/jobs lists it.
type Job struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Lock        string  `json:"lock,omitempty"`
	Timeout     string  `json:"timeout,omitempty"`
	Confirm     bool    `json:"confirm"`
	Params      []Param `json:"params"`
	LastRun     *Run    `json:"last_run"`
}

// Param is a job's parameter.
type Param struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Required    bool     `json:"required"`
	Default     string   `json:"default,omitempty"`
	Choices     []string `json:"choices,omitempty"`
	Pattern     string   `json:"pattern,omitempty"`
}

// TriggerRequest is the body of POST /api/jobs/{job}/runs.
type TriggerRequest struct {
	Params map[string]string `json:"params"`
}

// ErrorBody is what the server answers an error with.
type ErrorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"` // the parameter at fault, if any
}

// Describe says what the run waits for, as people read it: "2nd in line,
// waiting for lock deploy-production, held by #41 (alice, running for
// 3m12s)" or "next in line, waiting for a free slot".
func (w *Wait) Describe(now time.Time) string {
	place := "next in line"
	if w.Position > 1 {
		place = ordinal(w.Position) + " in line"
	}
	if w.Lock == "" {
		return place + ", waiting for a free slot"
	}
	s := fmt.Sprintf("%s, waiting for lock %s, held by #%d", place, w.Lock, w.Holder)
	if who := w.HeldBy(now); who != "" {
		s += " (" + who + ")"
	}
	return s
}

// HeldBy says who holds the lock and for how long: "alice, running for
// 3m12s" ("" when not known).
func (w *Wait) HeldBy(now time.Time) string {
	var who []string
	if w.HolderBy != "" {
		who = append(who, w.HolderBy)
	}
	if w.HolderSince != nil {
		who = append(who, "running for "+now.Sub(*w.HolderSince).Truncate(time.Second).String())
	}
	return strings.Join(who, ", ")
}

func ordinal(n int) string {
	suffix := "th"
	if n%100 < 11 || n%100 > 13 {
		switch n % 10 {
		case 1:
			suffix = "st"
		case 2:
			suffix = "nd"
		case 3:
			suffix = "rd"
		}
	}
	return strconv.Itoa(n) + suffix
}
