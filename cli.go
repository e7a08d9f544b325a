package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shiplog/shiplog/jobs"
	"github.com/shiplog/shiplog/streams"
)

// Exit codes of the CLI, documented in the README. A failed run exits with
// the job's own code.
const (
	exitOK          = 0
	exitFailed      = 1 // a failed run with no exit code of its own
	exitUsage       = 64
	exitInvalid     = 65 // unknown job or run, invalid params
	exitUnreachable = 69
	exitCLIError    = 70
	exitInterrupted = 75
	exitNoPerm      = 77 // no token, or the token may not do this
	exitTimedOut    = 124
	exitCanceled    = 130
)

// exitError makes the program exit with code after printing msg.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// runExitCode is what the CLI exits with for a finished run.
func runExitCode(r *runJSON) int {
	switch r.State {
	case jobs.Succeeded:
		return exitOK
	case jobs.Failed:
		if r.ExitCode != nil && *r.ExitCode > 0 && *r.ExitCode < 256 {
			return *r.ExitCode
		}
		return exitFailed
	case jobs.Canceled:
		return exitCanceled
	case jobs.TimedOut:
		return exitTimedOut
	case jobs.Interrupted:
		return exitInterrupted
	}
	return exitCLIError
}

// client talks to a shiplog server.
type client struct {
	base    string
	token   string
	http    *http.Client
	stamped bool // follow with line times
}

func newClient(server string) (*client, error) {
	if server == "" {
		server = envOr("SHIPLOG_SERVER", "http://127.0.0.1:8080")
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &exitError{code: exitUsage, msg: fmt.Sprintf("--server %q: want a URL like http://127.0.0.1:8080", server)}
	}
	return &client{base: strings.TrimRight(server, "/"), token: os.Getenv("SHIPLOG_TOKEN"), http: &http.Client{}}, nil
}

// do sends a request and returns the response for a 2xx or 304 status; other
// statuses become errors carrying the server's message.
func (c *client) do(ctx context.Context, method, path string, body io.Reader, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, &exitError{code: exitCLIError, msg: err.Error()}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &exitError{code: exitUnreachable, msg: fmt.Sprintf("cannot reach the server at %s: %v", c.base, errors.Unwrap(err))}
	}
	if resp.StatusCode < 300 || resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
		Field string `json:"field"`
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(data))
	}
	code := exitCLIError
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity:
		code = exitInvalid
	case http.StatusUnauthorized, http.StatusForbidden:
		code = exitNoPerm
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		code = exitUnreachable
	}
	return nil, &exitError{code: code, msg: fmt.Sprintf("%s %s: %s (%d)", method, path, e.Error, resp.StatusCode)}
}

func (c *client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeResponse(resp, v)
}

func decodeResponse(resp *http.Response, v any) error {
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return &exitError{code: exitCLIError, msg: fmt.Sprintf("read response: %v", err)}
	}
	return nil
}

// follow streams run id's log to out from offset, resuming across dropped
// connections, and returns the finished run. progress, if set, is told of
// status changes.
func (c *client) follow(ctx context.Context, id int64, out io.Writer, progress func(*runJSON)) (*runJSON, error) {
	once := c.followOnce
	if c.stamped {
		once = func(ctx context.Context, id int64, offset *int64, out io.Writer, _ func(*runJSON)) (*runJSON, error) {
			return c.pollStamped(ctx, id, offset, out)
		}
	}
	var offset int64
	failures := 0 // in a row, without getting further
	for {
		before := offset
		run, err := once(ctx, id, &offset, out, progress)
		if run != nil || ctx.Err() != nil {
			return run, err
		}
		var ee *exitError
		if errors.As(err, &ee) && ee.code != exitUnreachable {
			return nil, err
		}
		if offset > before {
			failures = 0 // a flaky link that keeps delivering is followed for good
		}
		failures++
		if failures > maxFollowFailures {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff(failures)):
		}
	}
}

// maxFollowFailures is how many reconnects in a row may fail to get any
// further before a follow gives up: with backoff, about two minutes.
const maxFollowFailures = 20

// backoff is the wait before reconnect n (from 1): doubling from 200 ms up
// to 8 s, with jitter of ±50% so that many clients cut at once do not come
// back at once.
func backoff(n int) time.Duration {
	d := 200 * time.Millisecond << min(n-1, 5)
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

func (c *client) followOnce(ctx context.Context, id int64, offset *int64, out io.Writer, progress func(*runJSON)) (*runJSON, error) {
	hdr := http.Header{"Last-Event-Id": {strconv.FormatInt(*offset, 10)}, "Accept": {"text/event-stream"}}
	resp, err := c.do(ctx, http.MethodGet, "/api/runs/"+strconv.FormatInt(id, 10)+"/events", nil, hdr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		// Resumed at the end of a finished run: nothing more to come.
		var run runJSON
		if err := c.getJSON(ctx, "/api/runs/"+strconv.FormatInt(id, 10), &run); err != nil {
			return nil, err
		}
		return &run, nil
	}
	dec := streams.NewDecoder(resp.Body)
	for {
		ev, err := dec.Next()
		if err != nil {
			return nil, &exitError{code: exitUnreachable, msg: fmt.Sprintf("stream interrupted: %v", err)}
		}
		switch ev.Name {
		case "log":
			var buf []byte
			for _, l := range ev.Lines() {
				buf = append(buf, l...)
				buf = append(buf, '\n')
			}
			if _, err := out.Write(buf); err != nil {
				return nil, &exitError{code: exitCLIError, msg: fmt.Sprintf("write log: %v", err)}
			}
			if off, err := strconv.ParseInt(ev.ID, 10, 64); err == nil {
				*offset = off
			}
		case "status", "end":
			var run runJSON
			if len(ev.Data) == 0 || json.Unmarshal([]byte(ev.Data[0]), &run) != nil {
				continue
			}
			if progress != nil {
				progress(&run)
			}
			if ev.Name == "end" {
				return &run, nil
			}
		}
	}
}

// pollStamped follows run id's log with its line times by long polls of the
// raw log, which stamps lines (the event stream carries none), until the log
// is complete.
func (c *client) pollStamped(ctx context.Context, id int64, offset *int64, out io.Writer) (*runJSON, error) {
	base := "/api/runs/" + strconv.FormatInt(id, 10)
	for {
		resp, err := c.do(ctx, http.MethodGet, base+"/log?timestamps=1&wait=30s&after="+strconv.FormatInt(*offset, 10), nil, nil)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(out, resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, &exitError{code: exitUnreachable, msg: fmt.Sprintf("log interrupted: %v", err)}
		}
		next, err := strconv.ParseInt(resp.Header.Get("X-Log-Offset"), 10, 64)
		if err != nil {
			return nil, &exitError{code: exitCLIError, msg: "the server sent no X-Log-Offset"}
		}
		*offset = next
		if resp.Header.Get("X-Log-Complete") == "true" {
			var run runJSON
			if err := c.getJSON(ctx, base, &run); err != nil {
				return nil, err
			}
			return &run, nil
		}
	}
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressLine renders a one-line progress bar for a terminal.
func progressLine(r *runJSON) string {
	const width = 24
	filled := r.Progress.Percent * width / 100
	bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
	return fmt.Sprintf("\r\033[K#%d %s %s %3d%% %s", r.ID, r.State, bar, r.Progress.Percent, truncate(r.Progress.Message, 50))
}

func describeRun(r *runJSON) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s: %s", r.ID, r.Job, r.State)
	if r.ExitCode != nil && r.State.Finished() {
		fmt.Fprintf(&b, " (exit %d)", *r.ExitCode)
	}
	if r.Progress.Message != "" || r.Progress.Percent > 0 {
		fmt.Fprintf(&b, " %d%% %s", r.Progress.Percent, r.Progress.Message)
	}
	if r.Error != "" {
		fmt.Fprintf(&b, " — %s", r.Error)
	}
	return b.String()
}
