package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/shiplog/shiplog/jobs"
)

func fmtMsg(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// runJSON is the API's view of a run.
type runJSON struct {
	*jobs.Run
	DurationMS *int64 `json:"duration_ms"`
	// Log is there once the run has finished. While it runs, its size and
	// line count change with every line: they are in the X-Log-Bytes and
	// X-Log-Lines headers instead, so the ETag moves only with state,
	// progress and annotations, and polls stay cheap 304s.
	Log      *logJSON      `json:"log,omitempty"`
	Links    linksJSON     `json:"links"`
	Progress jobs.Progress `json:"progress"`
}

type logJSON struct {
	Bytes int64 `json:"bytes"`
	Lines int64 `json:"lines"`
	Cut   bool  `json:"cut"` // cut at the job's max_log_size
}

type linksJSON struct {
	Page   string `json:"page"`
	Log    string `json:"log"`
	Events string `json:"events"`
}

func toRunJSON(r *jobs.Run, now time.Time) runJSON {
	id := strconv.FormatInt(r.ID, 10)
	out := runJSON{
		Run: r,
		Links: linksJSON{
			Page:   "/runs/" + id,
			Log:    "/api/runs/" + id + "/log",
			Events: "/api/runs/" + id + "/events",
		},
	}
	if r.State.Finished() {
		out.Log = &logJSON{Bytes: r.LogBytes, Lines: r.LogLines, Cut: r.LogCut}
	}
	if r.Progress != nil {
		out.Progress = *r.Progress
	}
	if r.StartedAt != nil {
		d := r.Duration(now).Milliseconds()
		if r.FinishedAt != nil {
			out.DurationMS = &d
		} else {
			// A running run's duration changes every moment; clients compute
			// it from started_at, so its ETag stays put between changes.
			out.DurationMS = nil
		}
	}
	if out.Annotations == nil {
		out.Annotations = []jobs.Annotation{}
	}
	return out
}

type paramJSON struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Required    bool     `json:"required"`
	Default     string   `json:"default,omitempty"`
	Choices     []string `json:"choices,omitempty"`
	Pattern     string   `json:"pattern,omitempty"`
}

type jobJSON struct {
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Lock        string      `json:"lock,omitempty"`
	Timeout     string      `json:"timeout,omitempty"`
	Confirm     bool        `json:"confirm"`
	Params      []paramJSON `json:"params"`
	LastRun     *runJSON    `json:"last_run"`
}

func toJobJSON(j *jobs.Job, last *jobs.Run, now time.Time) jobJSON {
	out := jobJSON{Name: j.Name, Description: j.Description, Lock: j.Lock, Confirm: j.Confirm, Params: []paramJSON{}}
	if j.Timeout > 0 {
		out.Timeout = j.Timeout.String()
	}
	for _, p := range j.Params {
		out.Params = append(out.Params, paramJSON{p.Name, p.Description, p.Required, p.Default, p.Choices, p.Pattern})
	}
	if last != nil {
		rj := toRunJSON(last, now)
		out.LastRun = &rj
	}
	return out
}
