// Package views renders shiplog's pages with templ. Components take the plain
// view values below and never query anything.
package views

import (
	"fmt"
	"strconv"
	"time"
)

// Session is who is looking, for the header and the CSRF token every form
// carries.
type Session struct {
	Auth bool // tokens are configured
	User string
	Role string
	CSRF string
}

// SignIn is the sign-in page.
type SignIn struct {
	Next    string
	Error   string
	Session Session
}

// KV is one parameter of a run.
type KV struct{ Key, Value string }

// Run is a run as the pages show it.
type Run struct {
	ID          int64
	Job         string
	State       string
	Finished    bool
	Params      []KV
	TriggeredBy string
	Node        string // the process that runs or ran it
	QueuedAt    time.Time
	StartedAt   *time.Time
	FinishedAt  *time.Time
	ExitCode    *int
	Error       string
	Percent     int
	Message     string
	HasProgress bool
	RerunOf     int64
	// Waiting says what a queued run waits for ("" when not queued).
	Waiting string
	// Environment and Version are what the run deploys, if its job says.
	Environment, Version string
	// Timeline is a bar per ::group::, on the run's time axis.
	Timeline []Span
	// Gates are the questions its script stopped at; Gate is the one it
	// waits at now (State is then "waiting").
	Gates []GateView
	Gate  *GateView
}

// GateView is a gate as the run page shows it.
type GateView struct {
	ID        int
	Question  string
	AskedAt   time.Time
	Deadline  time.Time
	Line      int64  // log lines before it
	Who       string // who may answer, in words
	Decision  string // "" while open
	By        string
	Reason    string
	DecidedAt *time.Time
}

// Span is one group on a run's timeline: X and W place its bar on an axis
// of 1000 from the run's start to its end (or now).
type Span struct {
	Title    string
	Line     int64
	Depth    int
	Outcome  string // a run state: running, succeeded, failed, …
	X, W     float64
	Duration string
	Open     bool // not ended yet
}

// Job is one row of the dashboard.
type Job struct {
	Name        string
	Description string
	Last        *Run
	// Direct means the Run button can start it at once: no params to fill in
	// and no confirmation asked.
	Direct bool
}

// Dashboard is the front page.
type Dashboard struct {
	Jobs       []Job
	Active     []Run
	Session    Session
	Filterable bool   // enough jobs to offer a filter
	Query      string // the filter, without JavaScript
}

// Field is one parameter input of a job's form.
type Field struct {
	Name        string
	Description string
	Value       string
	Required    bool
	Choices     []string
	Pattern     string
	Error       string
}

// Bar is one run in the duration chart.
type Bar struct {
	ID      int64
	State   string
	Seconds float64
}

// Trend is how long one group of a job took over its last runs: a bar per
// run, oldest first; a zero Bar (ID 0) where the run had no such group.
type Trend struct {
	Title string
	Bars  []Bar
}

// JobPage is a job: its form, history and chart.
type JobPage struct {
	Name        string
	Description string
	Confirm     bool
	Lock        string
	Zone        string // the runners it runs on; "" for the default zone
	Timeout     string
	Fields      []Field
	FormError   string
	Confirming  bool // show the confirmation step for the submitted values
	Runs        []Run
	Older       string // URL of the next page of history, if any
	Newer       string
	Bars        []Bar
	GroupTrends []Trend     // how each group's duration moved
	Queues      []LockQueue // the lines for the locks this job's queued runs wait for
	Session     Session
}

// LockQueue is the line of runs waiting for a lock, and who holds it.
type LockQueue struct {
	Lock    string
	Holder  int64
	HeldBy  string // "alice, running for 3m12s"
	Waiting []Run  // first in line first
}

// Annotation is a notice, warning or error of a run.
type Annotation struct {
	Level, Title, Message string
	Place                 string // where in the source: "app.go:12:5"
	Line                  int64  // in the log
}

// TailLine is one line of a log's tail, as plain text; a line too long to
// show whole is shortened, and More says how many bytes were left out.
type TailLine struct {
	Text string
	More int64
}

// RunPage is a run with its log.
type RunPage struct {
	Run         Run
	Annotations []Annotation
	// Tail is the end of the log, rendered for readers without JavaScript.
	Tail      []TailLine
	TailFirst int64 // line number of Tail[0]
	LogLines  int64
	LogBytes  int64
	Session   Session
	// TTYCols and TTYRows are the size of the job's terminal (tty: true);
	// 0 for a pipe.
	TTYCols, TTYRows int
	// CanAnswer: the viewer may answer the gate the run waits at; if not,
	// AnswerNote may say why.
	CanAnswer  bool
	AnswerNote string
	// CompareWith is the job's last successful run before this one, for
	// "Compare"; 0 for none.
	CompareWith int64
	// Deliveries are the attempts to notify webhooks of the run.
	Deliveries []Delivery
}

// Delivery is one attempt to deliver a notification.
type Delivery struct {
	Event, Target string
	Try           int
	At            time.Time
	Status        int
	Error         string
	MS            int64
	Final         bool
}

// ErrorPage is shown for a failed page request.
type ErrorPage struct {
	Status  int
	Message string
	Session Session
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func runURL(id int64) string { return "/runs/" + itoa(id) }

func jobURL(name string) string { return "/jobs/" + name }

// DiffPage compares a run's log with an earlier run's.
type DiffPage struct {
	Run, Against Run
	Hunks        [][]DiffLine
	Truncated    bool // only the start of a long log was compared
	TooDifferent bool // the hunks stop where the logs differ too much
	Session      Session
}

// DiffLine is one line of a diff: Kind " " (both), "-" (only in Against),
// "+" (only in Run); A and B its line numbers in each log.
type DiffLine struct {
	Kind string
	A, B int
	Text string
}

// EnvironmentsPage is what is deployed where.
type EnvironmentsPage struct {
	Session      Session
	Environments []EnvironmentView
}

// EnvironmentView is one environment: its current deploy, those on their
// way, and its latest runs.
type EnvironmentView struct {
	Name      string
	Current   *Run
	Deploying []Run
	History   []Run
}

// RunsPage is the list of every run, with its filters.
type RunsPage struct {
	Session                  Session
	Runs                     []Run
	Older, Newer             string
	Jobs, States, Triggerers []string // the filters' choices
	Job, State, By           string   // the filters chosen
}

// Filtered reports whether any filter is chosen.
func (p RunsPage) Filtered() bool { return p.Job != "" || p.State != "" || p.By != "" }

// Count says how many of a thing: "1 line", "2 lines".
func Count(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return itoa(n) + " " + thing + "s"
}

func iso(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func clock(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }

// Duration formats d like "1m 04s", and a run under ten seconds in
// tenths ("0.4s"), so that a quick run does not read "0s".
func Duration(d time.Duration) string {
	if r := d.Round(100 * time.Millisecond); r < 10*time.Second {
		return fmt.Sprintf("%.1fs", r.Seconds())
	}
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// signalName names the signal an exit code of 128+n says killed the job
// ("SIGTERM" for 143), for the signals a run is stopped with or dies of.
func signalName(code int) string {
	switch code - 128 {
	case 1:
		return "SIGHUP"
	case 2:
		return "SIGINT"
	case 6:
		return "SIGABRT"
	case 9:
		return "SIGKILL"
	case 11:
		return "SIGSEGV"
	case 13:
		return "SIGPIPE"
	case 15:
		return "SIGTERM"
	}
	return ""
}

// refreshWhileLive is how often a page without JavaScript reloads a run
// that has not finished.
func refreshWhileLive(r Run) int {
	if r.Finished {
		return 0
	}
	return 5
}

func (r Run) duration() string {
	if r.StartedAt == nil || r.FinishedAt == nil {
		return ""
	}
	return Duration(r.FinishedAt.Sub(*r.StartedAt))
}

func stateLabel(s string) string {
	switch s {
	case "timed_out":
		return "timed out"
	case "":
		return "never run"
	}
	return s
}
