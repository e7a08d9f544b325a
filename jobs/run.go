package jobs

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"
)

// State is where a run is in its life.
type State string

// The states of a run. Only Queued and Running are not final.
const (
	Queued      State = "queued"
	Running     State = "running"
	Succeeded   State = "succeeded"
	Failed      State = "failed"
	Canceled    State = "canceled"
	TimedOut    State = "timed_out"
	Interrupted State = "interrupted"
)

// States lists every state, in the order a run can reach them.
var States = []State{Queued, Running, Succeeded, Failed, Canceled, TimedOut, Interrupted}

// Finished reports whether the state is final.
func (s State) Finished() bool { return s != Queued && s != Running }

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, v := range States {
		if v == s {
			return true
		}
	}
	return false
}

var (
	// ErrNotFound is returned for a run ID that does not exist.
	ErrNotFound = errors.New("run not found")
	// ErrFinished is returned when an action needs a run that has not finished.
	ErrFinished = errors.New("run already finished")
	// ErrShuttingDown is returned when the runner no longer takes runs.
	ErrShuttingDown = errors.New("server is shutting down")
	// ErrNoSpace is returned when the data directory's disk is full.
	ErrNoSpace = errors.New("no space left in the data directory")
	// ErrNoRunner is returned when the node running a run does not
	// answer.
	ErrNoRunner = errors.New("no runner answers")
)

// noSpace wraps err as ErrNoSpace when it says the disk is full: ENOSPC
// from the file system, SQLITE_FULL from the database.
func noSpace(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || strings.Contains(err.Error(), "database or disk is full") {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// Progress is the latest ::progress:: a run reported. Progress and
// Annotation are the run record's (stored as JSON in the data dir); the
// HTTP API's api.Progress and api.Annotation have the same fields and are
// converted from them directly, so a field added to one side alone fails
// to compile and has to be decided on.
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

// Wait says what a queued run waits for: its place in line, and the lock
// another run holds, or (no Lock) a free slot under max_concurrent_runs.
type Wait struct {
	Position int    `json:"position"` // 1: next to start
	Lock     string `json:"lock,omitempty"`
	// The run holding Lock: its id, who triggered it and when it started.
	Holder      int64      `json:"holder,omitempty"`
	HolderBy    string     `json:"holder_by,omitempty"`
	HolderSince *time.Time `json:"holder_since,omitempty"`
}

// Group is a ::group:: of a run's log: its title, the lines it spans and
// when it began and ended, for the run's timeline.
type Group struct {
	Title   string     `json:"title"`
	Line    int64      `json:"line"`               // its ::group:: line
	EndLine int64      `json:"end_line,omitempty"` // its ::endgroup:: line; 0 while open
	Depth   int        `json:"depth,omitempty"`    // how many groups it is in
	Start   time.Time  `json:"start"`
	End     *time.Time `json:"end,omitempty"`
}

// Run is the record of one execution of a job.
type Run struct {
	ID          int64             `json:"id"`
	Job         string            `json:"job"`
	Params      map[string]string `json:"params"`
	State       State             `json:"state"`
	ExitCode    *int              `json:"exit_code"`
	Error       string            `json:"error,omitempty"` // why it failed, when not the command's own doing
	Progress    *Progress         `json:"progress"`
	Annotations []Annotation      `json:"annotations"`
	Groups      []Group           `json:"groups,omitempty"`
	Gates       []Gate            `json:"gates,omitempty"` // the last may be open (see OpenGate)
	TriggeredBy string            `json:"triggered_by"`
	RerunOf     int64             `json:"rerun_of,omitempty"`
	QueuedAt    time.Time         `json:"queued_at"`
	StartedAt   *time.Time        `json:"started_at"`
	FinishedAt  *time.Time        `json:"finished_at"`
	Wait        *Wait             `json:"-"`              // what a queued run waits for, as read (see fillWaits)
	Lock        string            `json:"lock,omitempty"` // the lock it takes, params filled in
	// Environment and Version are what it deploys (the job's deploys).
	Environment string `json:"environment,omitempty"`
	Version     string `json:"version,omitempty"`
	Node        string `json:"node,omitempty"` // the node that runs or ran it
	LogBytes    int64  `json:"-"`
	LogLines    int64  `json:"-"`
	LogCut      bool   `json:"-"` // cut at the job's max_log_size
	PID         int    `json:"-"` // process group of a running run
}

// GroupOutcome is how group g of r went: running while open in a run that
// runs; the run's own end if it ended inside it (failed, canceled, …);
// failed if an ::error:: was printed inside it; succeeded otherwise.
func (r *Run) GroupOutcome(g Group) State {
	if g.EndLine == 0 {
		if !r.State.Finished() {
			return Running
		}
		return r.State
	}
	for _, a := range r.Annotations {
		if a.Level == "error" && a.Line > g.Line && a.Line < g.EndLine {
			return Failed
		}
	}
	return Succeeded
}

// Duration is how long the run has been running, or ran.
func (r *Run) Duration(now time.Time) time.Duration {
	if r.StartedAt == nil {
		return 0
	}
	end := now
	if r.FinishedAt != nil {
		end = *r.FinishedAt
	}
	return end.Sub(*r.StartedAt)
}

func (r *Run) clone() *Run {
	c := *r
	c.Params = make(map[string]string, len(r.Params))
	for k, v := range r.Params {
		c.Params[k] = v
	}
	c.Annotations = append([]Annotation(nil), r.Annotations...)
	c.Groups = append([]Group(nil), r.Groups...)
	c.Gates = append([]Gate(nil), r.Gates...)
	if r.Progress != nil {
		p := *r.Progress
		c.Progress = &p
	}
	if r.Wait != nil {
		w := *r.Wait
		c.Wait = &w
	}
	return &c
}

// recordTime is now as records keep it, to the millisecond, so that a run
// read from memory, the database or the engine is the same run, and every
// replica gives it the same ETag.
func recordTime() time.Time { return time.Now().Truncate(time.Millisecond) }
