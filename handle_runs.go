package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shiplog/shiplog/access"
	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/jobs"
)

// maxWait bounds a long poll: under the 60 s that proxies commonly wait for
// an answer (nginx's proxy_read_timeout), so a poll through one is answered
// by shiplog, never cut by the proxy with a 504.
const maxWait = 55 * time.Second

func (s *server) listJobs(c echo.Context) error {
	ctx := c.Request().Context()
	now := time.Now()
	out := []api.Job{}
	for _, j := range s.runner.Config().Jobs {
		last, err := s.lastRun(ctx, j.Name)
		if err != nil {
			return err
		}
		out = append(out, toJobJSON(j, last, now))
	}
	return writeJSONCached(c, out)
}

func (s *server) lastRun(ctx context.Context, job string) (*jobs.Run, error) {
	runs, err := s.runner.List(ctx, jobs.Filter{Job: job, Limit: 1})
	if err != nil || len(runs) == 0 {
		return nil, err
	}
	return runs[0], nil
}

type createRunRequest struct {
	Params paramMap `json:"params"`
}

// paramMap is the params object. A name given twice is refused: parsers
// disagree on which value wins, so a proxy that checked one could let the
// other through.
type paramMap map[string]any

func (m *paramMap) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		*m = nil
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return badRequest("params", "invalid JSON: params must be an object of names and values")
	}
	out := paramMap{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name := tok.(string) // object keys are strings
		if _, dup := out[name]; dup {
			return badRequest(name, "%s is given twice", truncate(name, 40))
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return err
		}
		out[name] = v
	}
	*m = out
	return nil
}

// paramValues takes strings, and numbers and booleans as their text. A
// number keeps its exact digits (12345678901234567890 is not a float).
func paramValues(in map[string]any) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for k, v := range in {
		switch v := v.(type) {
		case string:
			out[k] = v
		case json.Number:
			out[k] = v.String()
		case bool:
			out[k] = strconv.FormatBool(v)
		default:
			return nil, badRequest(k, "%s: a parameter value must be a string, number or boolean", k)
		}
	}
	return out, nil
}

func decodeJSON(c echo.Context, v any) error {
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return he // body too large
		}
		var ae *apiError
		if errors.As(err, &ae) {
			return ae
		}
		if errors.Is(err, io.EOF) {
			return nil // no body: no parameters
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badRequest(te.Field, "invalid JSON: %s must be %s", te.Field, te.Type)
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return badRequest(strings.Trim(f, `"`), "unknown field %s", f)
		}
		return badRequest("", "invalid JSON: %v", err)
	}
	if dec.More() {
		return badRequest("", "invalid JSON: trailing data after the object")
	}
	return nil
}

func (s *server) createRun(c echo.Context) error {
	var req createRunRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	params, err := paramValues(req.Params)
	if err != nil {
		return err
	}
	if _, err := s.runner.Config().Job(c.Param("job")); err != nil {
		return err
	}
	if err := mayRun(c, c.Param("job")); err != nil {
		return err
	}
	if err := s.allowTrigger(c); err != nil {
		return err
	}
	run, err := s.runner.Trigger(c.Request().Context(), c.Param("job"), params, triggeredBy(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/api/runs/"+strconv.FormatInt(run.ID, 10))
	return c.JSON(http.StatusCreated, toRunJSON(run, time.Now()))
}

// triggeredBy names who asked for a run: the token's name, or the address
// when shiplog runs open.
func triggeredBy(c echo.Context) string {
	if p := principal(c); p != nil && p != access.Anonymous {
		return p.Name
	}
	return "anonymous@" + c.RealIP()
}

// checkRunAccess checks that the caller may act on run id's job.
func (s *server) checkRunAccess(c echo.Context, id int64) error {
	run, err := s.runner.Get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return mayRun(c, run.Job)
}

func (s *server) listRuns(c echo.Context) error {
	f, err := s.runFilter(c)
	if err != nil {
		return err
	}
	f.Limit = 50
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return badRequest("limit", "limit must be between 1 and 500")
		}
		f.Limit = n
	}
	before, err := positiveParam(c, "before", "run id", 0)
	if err != nil {
		return err
	}
	f.Before = before
	// One more than asked tells whether there is a next page.
	f.Limit++
	runs, err := s.runner.List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	now := time.Now()
	out := api.RunList{Runs: []api.Run{}}
	if len(runs) == f.Limit {
		runs = runs[:f.Limit-1]
		q := c.Request().URL.Query()
		q.Set("before", strconv.FormatInt(runs[len(runs)-1].ID, 10))
		out.Next = "/api/runs?" + q.Encode()
	}
	for _, r := range runs {
		out.Runs = append(out.Runs, toRunJSON(r, now))
	}
	return writeJSONCached(c, out)
}

// etagOf is a strong validator for a response body.
func etagOf(body []byte) string {
	h := fnv.New64a()
	h.Write(body)
	return fmt.Sprintf(`"%016x"`, h.Sum64())
}

// writeJSONCached answers with JSON and an ETag, or 304 when the client has it.
func writeJSONCached(c echo.Context, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	etag := etagOf(body)
	h := c.Response().Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache")
	if etagMatch(c.Request().Header.Get("If-None-Match"), etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.JSONBlob(http.StatusOK, body)
}

func etagMatch(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == etag || v == "*" {
			return true
		}
	}
	return false
}

// parseWait reads ?wait=30s (or plain seconds).
func parseWait(c echo.Context) (time.Duration, error) {
	v := c.QueryParam("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, err2 := strconv.Atoi(v)
		if err2 != nil {
			return 0, badRequest("wait", "wait must be a duration like 30s")
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 {
		return 0, badRequest("wait", "wait must not be negative")
	}
	return min(d, maxWait), nil
}

func (s *server) runBody(ctx context.Context, id int64) ([]byte, *jobs.Run, error) {
	run, err := s.runner.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	body, err := json.Marshal(toRunJSON(run, time.Now()))
	if err != nil {
		return nil, nil, fmt.Errorf("encode run: %w", err)
	}
	return body, run, nil
}

// getRun answers with the run; with ?wait and If-None-Match it is a long
// poll that answers at the run's next change, or 304 at the timeout.
func (s *server) getRun(c echo.Context) error {
	id, err := runID(c)
	if err != nil {
		return err
	}
	wait, err := parseWait(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	inm := c.Request().Header.Get("If-None-Match")
	var timeout <-chan time.Time
	if wait > 0 && inm != "" {
		writeFor(c, wait+writeTimeout)
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-cache")
	for {
		changed := s.runner.Watch(id)
		body, run, err := s.runBody(ctx, id)
		if err != nil {
			return err
		}
		etag := etagOf(body)
		if inm != "" && !etagMatch(inm, etag) && s.engine != nil && run.State != jobs.Queued {
			// The client may have had its ETag from a node whose copy of
			// the records is ahead of this one's by a moment: the
			// engine's record decides (a queued run's wait is this
			// node's reading, and is left as it is).
			if latest, err := s.runner.Latest(ctx, id); err == nil && latest.State != jobs.Queued {
				if b, err := json.Marshal(toRunJSON(latest, time.Now())); err == nil {
					body, run, etag = b, latest, etagOf(b)
				}
			}
		}
		h.Set("ETag", etag)
		h.Set("X-Run-State", string(run.State))
		s.setLogHeaders(h, run)
		if !etagMatch(inm, etag) {
			return c.JSONBlob(http.StatusOK, body)
		}
		if timeout == nil || run.State.Finished() {
			if !run.State.Finished() {
				h.Set("Retry-After", "2")
			}
			return c.NoContent(http.StatusNotModified)
		}
		select {
		case <-changed:
		case <-timeout:
			return c.NoContent(http.StatusNotModified)
		case <-s.hub.Closing():
			// The server is going away: answer now; the client asks again.
			h.Set("Retry-After", "2")
			return c.NoContent(http.StatusNotModified)
		case <-ctx.Done():
			return nil
		}
	}
}

// setLogHeaders says how far a run's log has got: live while it runs (the
// JSON leaves it out then, see api.Run.Log), from the runner's counts, so a
// poll costs no file reads.
func (s *server) setLogHeaders(h http.Header, run *jobs.Run) {
	size, lines := run.LogBytes, run.LogLines
	if b, l, ok := s.runner.LiveLog(run.ID); ok {
		size, lines = b, l
	}
	h.Set("X-Log-Bytes", strconv.FormatInt(size, 10))
	h.Set("X-Log-Lines", strconv.FormatInt(lines, 10))
}

// runFilter reads which runs a list asks for: ?job=, ?state= (a list,
// comma-separated) and ?by= (who triggered). The API and the runs page
// share it.
func (s *server) runFilter(c echo.Context) (jobs.Filter, error) {
	f := jobs.Filter{Job: c.QueryParam("job"), By: c.QueryParam("by")}
	if f.Job != "" {
		if _, err := s.runner.Config().Job(f.Job); err != nil {
			return f, err
		}
	}
	if v := c.QueryParam("state"); v != "" {
		for _, st := range strings.Split(v, ",") {
			if !jobs.State(st).Valid() {
				return f, badRequest("state", "unknown state %q", truncate(st, 40))
			}
			f.States = append(f.States, jobs.State(st))
		}
	}
	if len(f.By) > 200 {
		return f, badRequest("by", "by is longer than 200 bytes")
	}
	return f, nil
}

// cancelByRequest cancels the :id run if the caller may; the API and the
// page's form share it.
func (s *server) cancelByRequest(c echo.Context) (int64, error) {
	id, err := runID(c)
	if err != nil {
		return 0, err
	}
	if err := s.checkRunAccess(c, id); err != nil {
		return 0, err
	}
	return id, s.runner.Cancel(c.Request().Context(), id, triggeredBy(c))
}

// rerunByRequest queues a new run like the :id run, if the caller may.
func (s *server) rerunByRequest(c echo.Context) (*jobs.Run, error) {
	id, err := runID(c)
	if err != nil {
		return nil, err
	}
	if err := s.checkRunAccess(c, id); err != nil {
		return nil, err
	}
	if err := s.allowTrigger(c); err != nil {
		return nil, err
	}
	return s.runner.Rerun(c.Request().Context(), id, triggeredBy(c))
}

func (s *server) cancelRun(c echo.Context) error {
	id, err := s.cancelByRequest(c)
	if err != nil {
		return err
	}
	body, _, err := s.runBody(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusAccepted, body)
}

func (s *server) rerunRun(c echo.Context) error {
	run, err := s.rerunByRequest(c)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/api/runs/"+strconv.FormatInt(run.ID, 10))
	return c.JSON(http.StatusCreated, toRunJSON(run, time.Now()))
}
