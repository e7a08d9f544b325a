package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shiplog/shiplog/jobs"
	"github.com/shiplog/shiplog/streams"
)

// maxLongPollBytes bounds one long-poll answer; the client asks again.
const maxLongPollBytes = 1 << 20

// logStart resolves where a reader wants to start: Last-Event-ID, ?after or
// ?tail, checked against the log.
func (s *server) logStart(c echo.Context, id int64, path string) (int64, error) {
	raw, field := c.Request().Header.Get("Last-Event-ID"), "Last-Event-ID"
	if raw == "" {
		raw, field = c.QueryParam("after"), "after"
	}
	if raw != "" {
		off, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || off < 0 {
			return 0, badRequest(field, "%s must be a byte offset (a non-negative integer), got %q", field, truncate(raw, 40))
		}
		s.copies.reach(c.Request().Context(), id, off)
		if err := streams.CheckOffset(path, off); err != nil {
			if errors.Is(err, streams.ErrBeyondEnd) || errors.Is(err, streams.ErrNotLineStart) {
				return 0, badRequest(field, "%s: %v", field, err)
			}
			return 0, fmt.Errorf("check offset: %w", err)
		}
		return off, nil
	}
	if c.QueryParam("line") != "" {
		n, err := positiveParam(c, "line", "line number", 0)
		if err != nil {
			return 0, err
		}
		end, err := streams.LogEnd(path)
		if err != nil {
			return 0, fmt.Errorf("find log end: %w", err)
		}
		off, err := streams.LineOffset(path, n, end)
		if errors.Is(err, streams.ErrNoSuchLine) {
			return 0, badRequest("line", "the log has no line %d", n)
		}
		return off, err
	}
	if v := c.QueryParam("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, badRequest("tail", "tail must be a non-negative number of lines")
		}
		end, err := streams.LogEnd(path)
		if err != nil {
			return 0, fmt.Errorf("find log end: %w", err)
		}
		return streams.TailOffset(path, n, end)
	}
	return 0, nil
}

// unsatisfiable reports whether a bytes Range selects nothing because all
// it asks for are zero-length suffixes ("bytes=-0"), which RFC 9110 makes
// unsatisfiable; ServeContent handles every other form.
func unsatisfiable(rangeHeader string) bool {
	spec, ok := strings.CutPrefix(strings.TrimSpace(rangeHeader), "bytes=")
	if !ok {
		return false
	}
	for _, r := range strings.Split(spec, ",") {
		r = strings.TrimSpace(r)
		if suffix, ok := strings.CutPrefix(r, "-"); !ok || strings.TrimLeft(suffix, "0") != "" || suffix == "" {
			return false // a range that may select something
		}
	}
	return true
}

// errLogGone is the answer for a run whose log file is missing: deleted by
// hand or lost with the disk. Saying so beats serving an empty log as if
// the run had printed nothing.
func errLogGone(run *jobs.Run) error {
	return &apiError{status: http.StatusGone, msg: fmt.Sprintf("the log of run #%d is gone: its file was deleted from the data directory", run.ID)}
}

// logGone checks that a run's log file exists; a queued run may have none
// yet.
func logGone(run *jobs.Run, path string) error {
	if run.State == jobs.Queued {
		return nil
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return errLogGone(run)
	}
	return nil
}

// logOf returns the path of run's log, once it is here to be read (on a
// replica, a finished run's copy is whole first), or why it is not.
//
// The log of a run this node runs or ran is its own file; any other run's
// is a copy from the engine, in the same place. A queued run that this
// node may run is read from that file at once, and copied into it only
// if another node takes it.
func (s *server) logOf(c echo.Context, run *jobs.Run) (string, error) {
	path := s.runner.LogPath(run.ID)
	switch {
	case run.Node == s.node && run.State != jobs.Queued:
	case run.State == jobs.Queued && s.runner.RunsJob(run.Job):
		if err := s.copies.later(run.ID); err != nil {
			return "", err
		}
	default:
		if err := s.copies.have(c.Request().Context(), run); err != nil {
			return "", err
		}
	}
	return path, logGone(run, path)
}

// finalSize is the size of a finished run's log, or -1 while it runs.
func finalSize(run *jobs.Run, path string) int64 {
	if !run.State.Finished() {
		return -1
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func (s *server) streamRunEvents(c echo.Context) error {
	run, err := s.requestedRun(c)
	if err != nil {
		return err
	}
	id := run.ID
	ctx := c.Request().Context()
	path, err := s.logOf(c, run)
	if err != nil {
		return err
	}
	from, err := s.logStart(c, id, path)
	if err != nil {
		return err
	}
	// A client resuming at the very end of a finished run has everything:
	// 204 tells EventSource to stop for good (any status but 200 does), so
	// a page left open does not reconnect every few seconds forever.
	// ?partial=1: the unfinished last line too, as "partial" events.
	var partials bool
	switch c.QueryParam("partial") {
	case "", "0":
	case "1":
		partials = true
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "partial: want 1 or 0")
	}
	final := finalSize(run, path)
	resumed := c.Request().Header.Get("Last-Event-ID") != "" || c.QueryParam("after") != ""
	if resumed && final >= 0 && from >= final {
		return c.NoContent(http.StatusNoContent)
	}
	if c.Request().Method == http.MethodHead {
		h := c.Response().Header()
		h.Set("Content-Type", "text/event-stream; charset=utf-8")
		h.Set("Cache-Control", "no-cache, no-transform")
		return c.NoContent(http.StatusOK)
	}
	line, err := streams.LineNumber(path, from)
	if err != nil {
		return fmt.Errorf("number lines: %w", err)
	}
	window, _ := json.Marshal(map[string]int64{"offset": from, "line": line})

	release, err := s.acquireStream(c)
	if err != nil {
		return err
	}
	defer release()
	cur := s.hub.NewCursor(streams.Key(id), path, from, final)
	defer cur.Close()
	if partials {
		cur.WantPartials()
	}
	s.activeStreams.Add(1)
	defer s.activeStreams.Add(-1)
	s.streamsWG.Add(1)
	defer s.streamsWG.Done()
	status := func(ctx context.Context) ([]byte, bool, <-chan struct{}, error) {
		changed := s.runner.Watch(id)
		body, run, err := s.runBody(ctx, id)
		if err != nil {
			return nil, false, nil, err
		}
		return body, run.State.Finished(), changed, nil
	}
	err = streams.ServeEvents(ctx, c.Response(), cur, status, streams.EventOptions{Window: window, Lines: &s.linesStreamed, HTTP10: !c.Request().ProtoAtLeast(1, 1)})
	if err != nil && ctx.Err() == nil && !errors.Is(err, streams.ErrClosed) {
		s.log.Debug("event stream ended", "run_id", id, "err", err)
	}
	return nil
}

// getRunLog serves the raw log, or with ?after a long poll for the lines
// after that offset.
func (s *server) getRunLog(c echo.Context) error {
	run, err := s.requestedRun(c)
	if err != nil {
		return err
	}
	id := run.ID
	if !run.State.Finished() && s.engine != nil {
		// Finished through another node a moment ago, maybe: served as
		// running, the log would be a part taken for the whole.
		if now, err := s.runner.Latest(c.Request().Context(), id); err == nil {
			run = now
		}
	}
	path, err := s.logOf(c, run)
	if err != nil {
		return err
	}
	stamped, err := boolParam(c, "timestamps")
	if err != nil {
		return err
	}
	if c.QueryParam("after") != "" || c.QueryParam("line") != "" || c.Request().Header.Get("Last-Event-ID") != "" {
		return s.pollRunLog(c, id, run, path, stamped)
	}
	if stamped && c.Request().Header.Get("Range") != "" {
		return badRequest("Range", "Range counts bytes of the log itself, so it does not combine with timestamps")
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return errLogGone(run) // deleted since the check above
	}
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	end, err := streams.LogEnd(path)
	if err != nil {
		return fmt.Errorf("find log end: %w", err)
	}
	h := c.Response().Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Run-State", string(run.State))
	if c.QueryParam("download") != "" {
		h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="shiplog-%s-%d.log"`, run.Job, run.ID))
	}
	if stamped {
		c.Response().WriteHeader(http.StatusOK)
		if err := streams.WriteStamped(extendWrites(c.Response()), path, 0, end, 1); err != nil {
			s.log.Debug("stamped log ended", "run_id", id, "err", err)
		}
		return nil
	}
	var mod time.Time
	if run.State.Finished() && run.FinishedAt != nil {
		mod = *run.FinishedAt
	}
	if r := c.Request().Header.Get("Range"); r != "" && unsatisfiable(r) {
		// net/http's ServeContent answers "bytes=-0" with a 206 and an
		// invalid Content-Range: a suffix of no bytes selects nothing.
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", end))
		return c.NoContent(http.StatusRequestedRangeNotSatisfiable)
	}
	// Only whole lines: a line being written is served when it is complete.
	http.ServeContent(extendWrites(c.Response()), c.Request(), "", mod, io.NewSectionReader(f, 0, end))
	return nil
}

func (s *server) pollRunLog(c echo.Context, id int64, run *jobs.Run, path string, stamped bool) error {
	from, err := s.logStart(c, id, path)
	if err != nil {
		return err
	}
	wait, err := parseWait(c)
	if err != nil {
		return err
	}
	if wait > 0 {
		release, err := s.acquireStream(c) // a waiting poll holds a connection like a stream
		if err != nil {
			return err
		}
		defer release()
		writeFor(c, wait+writeTimeout)
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), wait)
	defer cancel()
	cur := s.hub.NewCursor(streams.Key(id), path, from, finalSize(run, path))
	defer cur.Close()

	var body []byte
	lines := 0
	complete := false
	b, err := cur.Poll()
	if b == nil && err == nil && wait > 0 {
		b, err = cur.Next(ctx)
	}
	for b != nil && err == nil {
		// Copied now: a batch's lines are valid until the next Poll.
		for _, l := range b.Lines {
			body = append(body, l...)
			body = append(body, '\n')
		}
		lines += len(b.Lines)
		if len(body) >= maxLongPollBytes {
			break
		}
		b, err = cur.Poll()
	}
	switch {
	case errors.Is(err, io.EOF):
		complete = true
	case errors.Is(err, context.DeadlineExceeded), err == nil:
	case c.Request().Context().Err() != nil:
		return nil
	default:
		return err
	}
	now, err := s.runner.Get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	if stamped && lines > 0 {
		first, err := streams.LineNumber(path, from)
		if err != nil {
			return fmt.Errorf("number lines: %w", err)
		}
		st := streams.NewStamper(path, first)
		defer st.Close()
		plain := body
		body = make([]byte, 0, len(plain)+lines*25)
		for len(plain) > 0 {
			i := bytes.IndexByte(plain, '\n')
			body = append(body, st.Stamp()...)
			body = append(body, plain[:i+1]...)
			plain = plain[i+1:]
		}
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Log-Start", strconv.FormatInt(from, 10))
	h.Set("X-Log-Offset", strconv.FormatInt(cur.Offset(), 10))
	h.Set("X-Run-State", string(now.State))
	h.Set("X-Log-Complete", strconv.FormatBool(complete))
	return c.Blob(http.StatusOK, "text/plain; charset=utf-8", body)
}

// maxTimesSpan bounds the lines one request for line times covers.
const maxTimesSpan = 100_000

// getLineTimes answers when lines ?from..?to arrived, as [line, unix ms]
// pairs: each pair holds for its line and those after it up to the next
// pair's. A log from before line times were kept has none.
func (s *server) getLineTimes(c echo.Context) error {
	run, err := s.requestedRun(c)
	if err != nil {
		return err
	}
	from, err := positiveParam(c, "from", "line number", 1)
	if err != nil {
		return err
	}
	to, err := positiveParam(c, "to", "line number", from+maxTimesSpan-1)
	if err != nil {
		return err
	}
	if to < from || to-from >= maxTimesSpan {
		return badRequest("to", "to must be from %d to %d", from, from+maxTimesSpan-1)
	}
	path, err := s.logOf(c, run)
	if err != nil {
		return err
	}
	recs, err := streams.LineTimes(path, from, to)
	if err != nil {
		return err
	}
	pairs := make([][2]int64, len(recs))
	for i, r := range recs {
		pairs[i] = [2]int64{r.Line, r.At}
	}
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.JSON(http.StatusOK, map[string]any{"from": from, "to": to, "times": pairs})
}

// maxSearchMatches bounds one search's answer.
const maxSearchMatches = 10000

// searchBudget is the time one search may take.
const searchBudget = 10 * time.Second

// searchRunLog streams the lines of a run's log matching ?q (plain text,
// or re:expression; ?case=1 to match case) as JSON lines, then a summary.
func (s *server) searchRunLog(c echo.Context) error {
	run, err := s.requestedRun(c)
	if err != nil {
		return err
	}
	id := run.ID
	q, err := streams.ParseQuery(c.QueryParam("q"), c.QueryParam("case") != "1")
	if err != nil {
		return badRequest("q", "q: %v", err)
	}
	limit := 1000
	if v := c.QueryParam("limit"); v != "" {
		limit, err = strconv.Atoi(v)
		if err != nil || limit < 1 || limit > maxSearchMatches {
			return badRequest("limit", "limit must be between 1 and %d", maxSearchMatches)
		}
	}
	path, err := s.logOf(c, run)
	if err != nil {
		return err
	}
	end, err := streams.LogEnd(path)
	if err != nil {
		return fmt.Errorf("find log end: %w", err)
	}
	if c.Request().Method == http.MethodHead {
		c.Response().Header().Set("Content-Type", "application/x-ndjson")
		return c.NoContent(http.StatusOK)
	}
	release, err := s.acquireSearch(c)
	if err != nil {
		return err
	}
	defer release()
	s.activeSearches.Add(1)
	defer s.activeSearches.Add(-1)
	// The budget bounds what one search may cost; what it found by then is
	// answered, marked timed out.
	ctx, cancel := context.WithTimeout(c.Request().Context(), cmp.Or(s.searchBudget, searchBudget))
	defer cancel()
	w := extendWrites(c.Response())
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	start := time.Now()
	n, truncated, err := streams.Search(ctx, path, end, q, limit, func(m streams.Match) error {
		if err := enc.Encode(m); err != nil {
			return err
		}
		return rc.Flush()
	})
	timedOut := errors.Is(err, context.DeadlineExceeded) && c.Request().Context().Err() == nil
	if err != nil && !timedOut {
		s.log.Debug("search ended", "run_id", id, "err", err)
		return nil
	}
	summary := map[string]any{"done": true, "matches": n, "truncated": truncated, "searched_bytes": end, "ms": time.Since(start).Milliseconds()}
	if timedOut {
		summary["timed_out"] = true
		summary["truncated"] = true
	}
	return enc.Encode(summary)
}
