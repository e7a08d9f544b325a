package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/jobs"
	"github.com/shiplog/shiplog/static"
	"github.com/shiplog/shiplog/streams"
	"github.com/shiplog/shiplog/views"
)

// tailLines is how many log lines the run page renders for readers without
// JavaScript.
const tailLines = 200

func (s *server) pageRoutes(e *echo.Echo) {
	get(e, "/", s.showDashboard)
	get(e, "/runs", s.showRuns)
	get(e, "/environments", s.showEnvironments)
	get(e, "/runs/:id/diff", s.showDiff)
	get(e, "/jobs/:job", s.showJob)
	e.POST("/jobs/:job/runs", s.submitRun, formLimit)
	get(e, "/runs/:id", s.showRun)
	e.POST("/runs/:id/cancel", s.cancelRunForm, formLimit)
	e.POST("/runs/:id/rerun", s.rerunRunForm, formLimit)
	e.POST("/runs/:id/gate", s.answerGateForm, formLimit)
	get(e, static.Prefix+"*", echo.WrapHandler(static.Handler()))
	get(e, "/signin", s.showSignIn)
	e.POST("/signin", s.signIn, formLimit)
	e.POST("/signout", s.signOut, formLimit)
}

// render writes a component, buffered so a render error is still a 500; an
// ETag lets pollers get 304 for an unchanged page.
func render(c echo.Context, status int, comp templ.Component) error {
	var buf bytes.Buffer
	if err := comp.Render(c.Request().Context(), &buf); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-cache")
	if status == http.StatusOK {
		etag := etagOf(buf.Bytes())
		h.Set("ETag", etag)
		if etagMatch(c.Request().Header.Get("If-None-Match"), etag) {
			return c.NoContent(http.StatusNotModified)
		}
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// formLimit bounds a form body.
var formLimit = middleware.BodyLimit("64K")

func (s *server) renderErrorPage(c echo.Context, status int, msg string) error {
	return render(c, status, views.ErrorView(views.ErrorPage{Status: status, Message: msg, Session: s.session(c)}))
}

func toView(r *jobs.Run) views.Run {
	v := views.Run{
		ID: r.ID, Job: r.Job, State: string(r.State), Finished: r.State.Finished(), TriggeredBy: r.TriggeredBy,
		QueuedAt: r.QueuedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, ExitCode: r.ExitCode,
		Error: r.Error, RerunOf: r.RerunOf, Node: r.Node, Environment: r.Environment, Version: r.Version,
	}
	if r.Progress != nil {
		v.HasProgress, v.Percent, v.Message = true, r.Progress.Percent, r.Progress.Message
	}
	if r.Wait != nil && r.State == jobs.Queued {
		w := api.Wait(*r.Wait)
		v.Waiting = w.Describe(time.Now())
	}
	v.Timeline = timeline(r, time.Now())
	for _, g := range r.Gates {
		gv := views.GateView{ID: g.ID, Question: g.Question, AskedAt: g.AskedAt, Deadline: g.Deadline, Line: g.Line,
			Who: gateWho(g), Decision: string(g.Decision), By: g.By, Reason: g.Reason, DecidedAt: g.DecidedAt}
		v.Gates = append(v.Gates, gv)
	}
	if r.OpenGate() != nil {
		v.State = "waiting"
		v.Gate = &v.Gates[len(v.Gates)-1]
	}
	keys := make([]string, 0, len(r.Params))
	for k := range r.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v.Params = append(v.Params, views.KV{Key: k, Value: r.Params[k]})
	}
	return v
}

// maxTrends bounds the groups the job page charts.
const maxTrends = 12

// groupTrends charts how long each top-level group took over the runs
// (newest first, as listed), oldest left; groups in order of first
// appearance, a gap where a run had no such group or did not end it.
func groupTrends(runs []*jobs.Run) []views.Trend {
	var (
		out   []views.Trend
		index = map[string]int{}
	)
	n := len(runs)
	for i := n - 1; i >= 0; i-- {
		r := runs[i]
		for _, g := range r.Groups {
			if g.Depth != 0 {
				continue
			}
			k, ok := index[g.Title]
			if !ok {
				if len(out) >= maxTrends {
					continue
				}
				k = len(out)
				index[g.Title] = k
				out = append(out, views.Trend{Title: g.Title, Bars: make([]views.Bar, n)})
			}
			if g.End == nil {
				continue
			}
			out[k].Bars[n-1-i] = views.Bar{ID: r.ID, State: string(r.GroupOutcome(g)), Seconds: g.End.Sub(g.Start).Seconds()}
		}
	}
	return out
}

// gateWho says who may answer gate g.
func gateWho(g jobs.Gate) string {
	who := "whoever may run the job may answer"
	if len(g.Approvers) > 0 {
		who = strings.Join(g.Approvers, ", ") + " may answer"
	}
	if g.FourEyes {
		who += ", not who triggered the run"
	}
	return who
}

// timeline places r's groups on its time axis, from its start to its end
// (or now).
func timeline(r *jobs.Run, now time.Time) []views.Span {
	if r.StartedAt == nil || len(r.Groups) == 0 {
		return nil
	}
	end := now
	if r.FinishedAt != nil {
		end = *r.FinishedAt
	}
	total := end.Sub(*r.StartedAt)
	at := func(t time.Time) float64 {
		if total <= 0 {
			return 0
		}
		return min(1000, max(0, 1000*float64(t.Sub(*r.StartedAt))/float64(total)))
	}
	spans := make([]views.Span, 0, len(r.Groups))
	for _, g := range r.Groups {
		gEnd := end
		if g.End != nil {
			gEnd = *g.End
		}
		x := at(g.Start)
		spans = append(spans, views.Span{
			Title: g.Title, Line: g.Line, Depth: g.Depth, Outcome: string(r.GroupOutcome(g)),
			X: x, W: max(at(gEnd)-x, 3), Duration: views.Duration(gEnd.Sub(g.Start)), Open: g.End == nil,
		})
	}
	return spans
}

func toViews(runs []*jobs.Run) []views.Run {
	out := make([]views.Run, len(runs))
	for i, r := range runs {
		out[i] = toView(r)
	}
	return out
}

// dashboardFilterAt is how many jobs the dashboard lists before it offers a
// filter.
const dashboardFilterAt = 10

func (s *server) showDashboard(c echo.Context) error {
	ctx := c.Request().Context()
	all := s.runner.Config().Jobs
	d := views.Dashboard{Filterable: len(all) > dashboardFilterAt, Query: c.QueryParam("q")}
	if len(d.Query) > 200 {
		return badRequest("q", "q is longer than 200 bytes")
	}
	q := strings.ToLower(d.Query)
	for _, j := range all {
		if q != "" && !strings.Contains(strings.ToLower(j.Name+" "+j.Description), q) {
			continue
		}
		row := views.Job{Name: j.Name, Description: j.Description, Direct: len(j.Params) == 0 && !j.Confirm}
		last, err := s.lastRun(ctx, j.Name)
		if err != nil {
			return err
		}
		if last != nil {
			v := toView(last)
			row.Last = &v
		}
		d.Jobs = append(d.Jobs, row)
	}
	active, err := s.runner.List(ctx, jobs.Filter{States: []jobs.State{jobs.Running, jobs.Queued}, Limit: 50})
	if err != nil {
		return err
	}
	d.Active = toViews(active)
	d.Session = s.session(c)
	if c.Request().Header.Get("HX-Request") == "true" {
		return render(c, http.StatusOK, views.DashboardLive(d))
	}
	return render(c, http.StatusOK, views.DashboardPage(d))
}

// historyPage reads ?before and returns a page of runs with links to the
// pages around it, which keep the request's other parameters (filters).
func (s *server) historyPage(c echo.Context, base string, f jobs.Filter) ([]views.Run, string, string, error) {
	const size = 20
	before, err := positiveParam(c, "before", "run id", 0)
	if err != nil {
		return nil, "", "", err
	}
	f.Before = before
	f.Limit = size + 1
	runs, err := s.runner.List(c.Request().Context(), f)
	if err != nil {
		return nil, "", "", err
	}
	q := c.Request().URL.Query()
	link := func() string {
		if len(q) == 0 {
			return base
		}
		return base + "?" + q.Encode()
	}
	var older, newer string
	if len(runs) > size {
		runs = runs[:size]
		q.Set("before", strconv.FormatInt(runs[size-1].ID, 10))
		older = link()
	}
	if f.Before > 0 {
		q.Del("before")
		newer = link()
	}
	return toViews(runs), older, newer, nil
}

// showRuns lists every run, filtered by job, state and who triggered.
func (s *server) showRuns(c echo.Context) error {
	f, err := s.runFilter(c)
	if err != nil {
		return err
	}
	p := views.RunsPage{Session: s.session(c), Job: f.Job, By: f.By}
	if len(f.States) > 0 {
		p.State = string(f.States[0])
	}
	if p.Runs, p.Older, p.Newer, err = s.historyPage(c, "/runs", f); err != nil {
		return err
	}
	for _, j := range s.runner.Config().Jobs {
		p.Jobs = append(p.Jobs, j.Name)
	}
	for _, st := range jobs.States {
		p.States = append(p.States, string(st))
	}
	if p.Triggerers, err = s.runner.Triggerers(c.Request().Context(), 50); err != nil {
		return err
	}
	return render(c, http.StatusOK, views.RunsList(p))
}

func (s *server) jobPage(ctx context.Context, c echo.Context, j *jobs.Job, values map[string]string, perr *jobs.ParamError) (views.JobPage, error) {
	p := views.JobPage{Name: j.Name, Description: j.Description, Confirm: j.Confirm, Lock: j.Lock, Session: s.session(c)}
	if j.Zone != jobs.DefaultZone {
		p.Zone = j.Zone
	}
	if j.Timeout > 0 {
		p.Timeout = j.Timeout.String()
	}
	for _, prm := range j.Params {
		f := views.Field{Name: prm.Name, Description: prm.Description, Required: prm.Required,
			Choices: prm.Choices, Pattern: prm.Pattern, Value: prm.Default}
		if v, ok := values[prm.Name]; ok {
			f.Value = v
		}
		if perr != nil && perr.Field == prm.Name {
			f.Error = perr.Msg
		}
		p.Fields = append(p.Fields, f)
	}
	if perr != nil && !slices.ContainsFunc(p.Fields, func(f views.Field) bool { return f.Error != "" }) {
		p.FormError = perr.Error()
	}
	var err error
	p.Runs, p.Older, p.Newer, err = s.historyPage(c, "/jobs/"+j.Name, jobs.Filter{Job: j.Name}) //nolint:contextcheck // c carries the request's context
	if err != nil {
		return p, err
	}
	recent, err := s.runner.List(ctx, jobs.Filter{Job: j.Name, Limit: 50,
		States: []jobs.State{jobs.Succeeded, jobs.Failed, jobs.Canceled, jobs.TimedOut, jobs.Interrupted}})
	if err != nil {
		return p, err
	}
	for i := len(recent) - 1; i >= 0; i-- {
		r := recent[i]
		p.Bars = append(p.Bars, views.Bar{ID: r.ID, State: string(r.State), Seconds: r.Duration(time.Now()).Seconds()})
	}
	p.GroupTrends = groupTrends(recent)
	p.Queues, err = s.lockQueues(ctx, j.Name)
	return p, err
}

// maxQueued bounds the queued runs a job page reads to draw lock queues.
const maxQueued = 500

// lockQueues returns the lines of runs waiting for the locks that job's
// queued runs wait for, with every job's runs in them, first in line
// first.
func (s *server) lockQueues(ctx context.Context, job string) ([]views.LockQueue, error) {
	queued, err := s.runner.List(ctx, jobs.Filter{States: []jobs.State{jobs.Queued}, Limit: maxQueued})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(queued, func(a, b *jobs.Run) int { return cmp.Compare(position(a), position(b)) })
	var out []views.LockQueue
	at := map[string]int{}
	for _, r := range queued {
		if r.Job == job && r.Wait != nil && r.Wait.Lock != "" {
			if _, ok := at[r.Wait.Lock]; !ok {
				at[r.Wait.Lock] = len(out)
				out = append(out, views.LockQueue{Lock: r.Wait.Lock})
			}
		}
	}
	now := time.Now()
	for _, r := range queued {
		if r.Wait == nil {
			continue
		}
		i, ok := at[r.Wait.Lock]
		if !ok {
			continue
		}
		q := &out[i]
		if q.Holder == 0 {
			w := api.Wait(*r.Wait)
			q.Holder, q.HeldBy = w.Holder, w.HeldBy(now)
		}
		q.Waiting = append(q.Waiting, toView(r))
	}
	return out, nil
}

func position(r *jobs.Run) int {
	if r.Wait == nil {
		return math.MaxInt
	}
	return r.Wait.Position
}

func (s *server) showJob(c echo.Context) error {
	j, err := s.runner.Config().Job(c.Param("job"))
	if err != nil {
		return err
	}
	p, err := s.jobPage(c.Request().Context(), c, j, nil, nil)
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, views.JobView(p))
}

// submitRun triggers a run from the job form (or the dashboard's Run
// button); invalid values come back beside their fields.
func (s *server) submitRun(c echo.Context) error {
	j, err := s.runner.Config().Job(c.Param("job"))
	if err != nil {
		return err
	}
	if err := mayRun(c, j.Name); err != nil {
		return err
	}
	form, err := c.FormParams()
	if err != nil {
		return badRequest("", "malformed form: %v", err)
	}
	values := map[string]string{}
	for _, p := range j.Params {
		if v, ok := form[p.Name]; ok {
			values[p.Name] = strings.TrimSpace(v[0])
		}
	}
	ctx := c.Request().Context()
	if _, err := j.ValidateParams(values); err != nil {
		var perr *jobs.ParamError
		if !errors.As(err, &perr) {
			return err
		}
		p, err := s.jobPage(ctx, c, j, values, perr)
		if err != nil {
			return err
		}
		return render(c, http.StatusUnprocessableEntity, views.JobView(p))
	}
	if j.Confirm && form.Get("_confirm") != "yes" {
		p, err := s.jobPage(ctx, c, j, values, nil)
		if err != nil {
			return err
		}
		p.Confirming = true
		return render(c, http.StatusOK, views.JobView(p))
	}
	if err := s.allowTrigger(c); err != nil {
		return err
	}
	run, err := s.runner.Trigger(ctx, j.Name, values, triggeredBy(c))
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/runs/"+strconv.FormatInt(run.ID, 10))
}

// place says where in the source an annotation points, as compilers do:
// "app.go:12:5", "app.go:12-14"; "" when it names no file.
func place(a jobs.Annotation) string {
	if a.File == "" {
		return ""
	}
	out := a.File
	if a.StartLine > 0 {
		out += ":" + strconv.Itoa(a.StartLine)
		if a.StartColumn > 0 {
			out += ":" + strconv.Itoa(a.StartColumn)
		}
		if a.EndLine > a.StartLine {
			out += "-" + strconv.Itoa(a.EndLine)
		}
	}
	return out
}

func (s *server) showRun(c echo.Context) error {
	run, err := s.requestedRun(c)
	if err != nil {
		return err
	}
	p := views.RunPage{Run: toView(run), LogLines: run.LogLines, LogBytes: run.LogBytes, Session: s.session(c)}
	if run.State.Finished() {
		if base, err := s.lastSuccess(c.Request().Context(), run); err == nil && base != nil {
			p.CompareWith = base.ID
		}
	}
	// Notifications go out when a run stops at a gate or ends: before that
	// (every header refresh of a live run) there is nothing to read.
	if run.State.Finished() || len(run.Gates) > 0 {
		if ds, err := s.deliveries(c.Request().Context(), run.ID); err == nil {
			for _, d := range ds {
				p.Deliveries = append(p.Deliveries, views.Delivery{Event: d.Event, Target: d.Target, Try: d.Try, At: d.At, Status: d.Status, Error: d.Error, MS: d.MS, Final: d.Final})
			}
		}
	}
	if g := run.OpenGate(); g != nil {
		switch err := mayAnswer(c, run); {
		case err != nil:
			p.AnswerNote = "You may not answer this gate."
		case g.FourEyes && triggeredBy(c) == run.TriggeredBy:
			p.AnswerNote = "You triggered this run: someone else must answer (four eyes)."
		default:
			p.CanAnswer = true
		}
	}
	if job, err := s.runner.Config().Job(run.Job); err == nil && job.TTY.On() {
		p.TTYCols, p.TTYRows = job.TTY.Cols, job.TTY.Rows // the screen the job wrote to
	}
	for _, a := range run.Annotations {
		p.Annotations = append(p.Annotations, views.Annotation{Level: a.Level, Title: a.Title, Message: a.Message, Place: place(a), Line: a.Line})
	}
	if c.QueryParam("part") == "head" {
		return render(c, http.StatusOK, views.RunHead(p))
	}
	path, err := s.logOf(c, run)
	if err != nil {
		return err
	}
	end, err := streams.LogEnd(path)
	if err != nil {
		return fmt.Errorf("find log end: %w", err)
	}
	start, err := streams.TailOffset(path, tailLines, end)
	if err != nil {
		return fmt.Errorf("find log tail: %w", err)
	}
	first, err := streams.LineNumber(path, start)
	if err != nil {
		return fmt.Errorf("number lines: %w", err)
	}
	tail, dropped, err := readTail(path, start, end)
	if err != nil {
		return err
	}
	p.Tail, p.TailFirst = tail, first+dropped
	before := p.TailFirst - 1
	p.LogLines = before + int64(len(p.Tail))
	return render(c, http.StatusOK, views.RunView(p))
}

// Bounds on the tail the run page renders: the page costs at most
// maxTailBytes of log however long its lines are.
const (
	maxTailBytes = 256 << 10
	maxTailLine  = 16 << 10
)

// readTail reads the whole lines in [start, end) as plain text (escape
// sequences removed, carriage returns resolved as a terminal would), each
// cut at maxTailLine bytes, keeping the last ones that fit in maxTailBytes.
// It returns them and how many lines at the start it left out.
func readTail(path string, start, end int64) ([]views.TailLine, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, nil
		}
		return nil, 0, fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(io.NewSectionReader(f, start, end-start), 64<<10)
	var (
		raw     [][]byte // kept lines, each at most maxTailLine
		more    []int64
		kept    int
		dropped int64
	)
	for {
		line, n, err := readCapped(r, maxTailLine)
		if n == 0 && err != nil {
			break
		}
		raw = append(raw, line)
		more = append(more, n-int64(len(line)))
		kept += len(line)
		for kept > maxTailBytes && len(raw) > 1 {
			kept -= len(raw[0])
			raw, more = raw[1:], more[1:]
			dropped++
		}
		if err != nil {
			break
		}
	}
	out := make([]views.TailLine, len(raw))
	for i, l := range raw {
		out[i] = views.TailLine{Text: views.PlainLine(string(l)), More: more[i]}
	}
	return out, dropped, nil
}

// readCapped reads one line (without its newline), keeping at most max
// bytes of it; n is the line's whole length.
func readCapped(r *bufio.Reader, max int) (line []byte, n int64, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		n += int64(len(chunk))
		if room := max - len(line); room > 0 {
			line = append(line, chunk[:min(len(chunk), room)]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			n--
			if len(line) > 0 && len(line) == int(n)+1 {
				line = line[:len(line)-1]
			}
		}
		return line, n, err
	}
}

func (s *server) cancelRunForm(c echo.Context) error {
	id, err := s.cancelByRequest(c)
	if err != nil && !errors.Is(err, jobs.ErrFinished) {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/runs/"+strconv.FormatInt(id, 10))
}

func (s *server) rerunRunForm(c echo.Context) error {
	run, err := s.rerunByRequest(c)
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/runs/"+strconv.FormatInt(run.ID, 10))
}
