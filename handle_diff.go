package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/shiplog/shiplog/jobs"
	"github.com/shiplog/shiplog/logdiff"
	"github.com/shiplog/shiplog/views"
)

// A diff reads at most this much of each log, and gives up past this many
// changed lines: what is different this time is near the start of a
// difference, and a comparison must stay cheap.
const (
	diffMaxBytes = 8 << 20
	diffMaxLines = 20000
	diffMaxEdits = 1000
	diffContext  = 3
)

// diffLine is one line of a diff, with its text as the run printed it
// (without terminal escapes) and its line numbers in each log.
type diffLine struct {
	Kind string `json:"kind"` // " ", "-" (only in against), "+" (only in run)
	A    int    `json:"a,omitempty"`
	B    int    `json:"b,omitempty"`
	Text string `json:"text"`
}

type diffResult struct {
	Run          int64        `json:"run"`
	Against      int64        `json:"against"`
	Truncated    bool         `json:"truncated"`     // a log was longer than what was compared
	TooDifferent bool         `json:"too_different"` // past diffMaxEdits changes: hunks stop there
	Hunks        [][]diffLine `json:"hunks"`
}

// errNoBaseline: nothing to compare with.
var errNoBaseline = &apiError{status: http.StatusNotFound, msg: "no earlier successful run of this job to compare with; give ?against=ID"}

// diff compares run's log with against's (?against=ID, or the job's last
// successful run before it).
func (s *server) diff(c echo.Context) (*jobs.Run, *jobs.Run, *diffResult, error) {
	run, err := s.requestedRun(c)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx := c.Request().Context()
	var base *jobs.Run
	if v := c.QueryParam("against"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return nil, nil, nil, badRequest("against", "against: a run id")
		}
		if base, err = s.runner.Get(ctx, id); err != nil {
			return nil, nil, nil, err
		}
	} else if base, err = s.lastSuccess(ctx, run); err != nil {
		return nil, nil, nil, err
	} else if base == nil {
		return nil, nil, nil, errNoBaseline
	}
	a, aCut, err := s.readLines(c, base)
	if err != nil {
		return nil, nil, nil, err
	}
	b, bCut, err := s.readLines(c, run)
	if err != nil {
		return nil, nil, nil, err
	}
	na, nb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		na[i] = logdiff.Normalize(a[i])
	}
	for i := range b {
		nb[i] = logdiff.Normalize(b[i])
	}
	ops, ok := logdiff.Diff(na, nb, diffMaxEdits)
	out := &diffResult{Run: run.ID, Against: base.ID, Truncated: aCut || bCut, TooDifferent: !ok, Hunks: [][]diffLine{}}
	shown := logdiff.Plain
	for _, h := range logdiff.Hunks(ops, diffContext) {
		lines := make([]diffLine, 0, len(h.Ops))
		for _, op := range h.Ops {
			l := diffLine{Kind: string(op.Kind), A: op.A, B: op.B}
			if op.B > 0 {
				l.Text = shown(b[op.B-1])
			} else {
				l.Text = shown(a[op.A-1])
			}
			lines = append(lines, l)
		}
		out.Hunks = append(out.Hunks, lines)
	}
	if !ok {
		// Past the bound: from the first difference on, each side's next lines.
		first := len(ops)
		var tail []diffLine
		for i := first; i < min(len(a), first+50); i++ {
			tail = append(tail, diffLine{Kind: "-", A: i + 1, Text: shown(a[i])})
		}
		for i := first; i < min(len(b), first+50); i++ {
			tail = append(tail, diffLine{Kind: "+", B: i + 1, Text: shown(b[i])})
		}
		if len(tail) > 0 {
			out.Hunks = append(out.Hunks, tail)
		}
	}
	return run, base, out, nil
}

// lastSuccess is the job's last successful run before run, or nil.
func (s *server) lastSuccess(ctx context.Context, run *jobs.Run) (*jobs.Run, error) {
	prev, err := s.runner.List(ctx, jobs.Filter{Job: run.Job, States: []jobs.State{jobs.Succeeded}, Before: run.ID, Limit: 1})
	if err != nil || len(prev) == 0 {
		return nil, err
	}
	return prev[0], nil
}

// readLines reads the start of run's log: at most diffMaxBytes and
// diffMaxLines whole lines; cut says there was more.
func (s *server) readLines(c echo.Context, run *jobs.Run) (lines []string, cut bool, err error) {
	path, err := s.logOf(c, run)
	if err != nil {
		return nil, false, err
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, diffMaxBytes+1))
	if err != nil {
		return nil, false, err
	}
	if len(data) > diffMaxBytes {
		data, cut = data[:diffMaxBytes], true
	}
	if i := strings.LastIndexByte(string(data), '\n'); i >= 0 {
		data = data[:i]
	} else {
		data = nil
	}
	if len(data) == 0 {
		return nil, cut, nil
	}
	lines = strings.Split(string(data), "\n")
	if len(lines) > diffMaxLines {
		lines, cut = lines[:diffMaxLines], true
	}
	return lines, cut, nil
}

// getDiff: GET /api/runs/:id/diff[?against=ID].
func (s *server) getDiff(c echo.Context) error {
	_, _, d, err := s.diff(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// showDiff is the diff page: the hunks, the first difference first.
func (s *server) showDiff(c echo.Context) error {
	run, base, d, err := s.diff(c)
	if err != nil {
		return err
	}
	p := views.DiffPage{Run: toView(run), Against: toView(base), Truncated: d.Truncated, TooDifferent: d.TooDifferent, Session: s.session(c)}
	for _, h := range d.Hunks {
		var vh []views.DiffLine
		for _, l := range h {
			vh = append(vh, views.DiffLine{Kind: l.Kind, A: l.A, B: l.B, Text: l.Text})
		}
		p.Hunks = append(p.Hunks, vh)
	}
	return render(c, http.StatusOK, views.DiffView(p))
}
