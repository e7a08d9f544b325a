package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/shiplog/shiplog/sse"
)

// Client talks to one shiplog server. Its methods are safe for concurrent
// use.
type Client struct {
	base  string
	token string
	// HTTP sends the requests; http.DefaultClient's settings by default.
	HTTP *http.Client
}

// New returns a client of the server at base (http or https URL), sending
// token, if not empty, as a bearer token.
func New(base, token string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q: want a URL like http://127.0.0.1:8080", base)
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, HTTP: &http.Client{}}, nil
}

// URL returns the absolute URL of path on the server.
func (c *Client) URL(path string) string { return c.base + path }

// StatusError is the server's answer to a request it refused.
type StatusError struct {
	Method, Path string
	Status       int
	Message      string
	Field        string // the parameter at fault, if any
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %s (%d)", e.Method, e.Path, e.Message, e.Status)
}

// UnreachableError says the server could not be reached, or a stream from
// it broke off.
type UnreachableError struct {
	Msg string
	Err error
}

func (e *UnreachableError) Error() string { return e.Msg }
func (e *UnreachableError) Unwrap() error { return e.Err }

// maxErrorBody bounds the error message read from a refusal.
const maxErrorBody = 64 << 10

// Do sends a request for path (with its query) and returns the response
// for a 2xx or 304 status; other statuses become a *StatusError with the
// server's message, and transport failures an *UnreachableError.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnreachableError{Msg: fmt.Sprintf("cannot reach the server at %s: %v", c.base, errors.Unwrap(err)), Err: err}
	}
	if resp.StatusCode < 300 || resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	defer resp.Body.Close()
	var e ErrorBody
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(data))
	}
	return nil, &StatusError{Method: method, Path: path, Status: resp.StatusCode, Message: e.Error, Field: e.Field}
}

// getJSON decodes the answer to GET path into v.
func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.Do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decode(resp, v)
}

// maxBody bounds a JSON answer: a run with its annotations, or a page.
const maxBody = 8 << 20

func decode(resp *http.Response, v any) error {
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(v); err != nil {
		return fmt.Errorf("read the answer to %s: %w", resp.Request.URL.Path, err)
	}
	return nil
}

func runPath(id int64) string { return "/api/runs/" + strconv.FormatInt(id, 10) }

// Jobs lists the jobs the server runs, each with its last run.
func (c *Client) Jobs(ctx context.Context) ([]Job, error) {
	var jobs []Job
	return jobs, c.getJSON(ctx, "/api/jobs", &jobs)
}

// Trigger queues a run of job with params.
func (c *Client) Trigger(ctx context.Context, job string, params map[string]string) (*Run, error) {
	if params == nil {
		params = map[string]string{}
	}
	body, err := json.Marshal(TriggerRequest{Params: params})
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(ctx, http.MethodPost, "/api/jobs/"+url.PathEscape(job)+"/runs", bytes.NewReader(body), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var run Run
	return &run, decode(resp, &run)
}

// Run returns run id as it is now.
func (c *Client) Run(ctx context.Context, id int64) (*Run, error) {
	var run Run
	return &run, c.getJSON(ctx, runPath(id), &run)
}

// Poll is one answer to a status poll: the run and its ETag, or Changed
// false when the run is as etag said (a 304).
type Poll struct {
	Run     *Run
	Raw     []byte // the run's JSON as the server sent it
	ETag    string
	Changed bool
}

// PollRun returns run id. With etag, the server holds the request up to
// wait (at most 55 s) until the run differs from etag, and answers
// Changed false if it did not.
func (c *Client) PollRun(ctx context.Context, id int64, etag string, wait time.Duration) (*Poll, error) {
	path, hdr := runPath(id), http.Header{}
	if etag != "" {
		hdr.Set("If-None-Match", etag)
		if wait > 0 {
			path += "?wait=" + strconv.FormatInt(wait.Milliseconds(), 10) + "ms"
		}
	}
	resp, err := c.Do(ctx, http.MethodGet, path, nil, hdr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return &Poll{ETag: etag}, nil
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, &UnreachableError{Msg: fmt.Sprintf("read run %d: %v", id, err), Err: err}
	}
	var run Run
	if err := json.Unmarshal(raw, &run); err != nil {
		return nil, fmt.Errorf("read run %d: %w", id, err)
	}
	return &Poll{Run: &run, Raw: raw, ETag: resp.Header.Get("ETag"), Changed: true}, nil
}

// Cancel asks the server to stop run id.
func (c *Client) Cancel(ctx context.Context, id int64) (*Run, error) {
	resp, err := c.Do(ctx, http.MethodPost, runPath(id)+"/cancel", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var run Run
	return &run, decode(resp, &run)
}

// Decide answers the gate run id waits at: decision is "approve" or
// "reject"; reason is recorded with it.
func (c *Client) Decide(ctx context.Context, id int64, decision, reason string) (*Run, error) {
	body, err := json.Marshal(GateAnswer{Decision: decision, Reason: reason})
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(ctx, http.MethodPost, runPath(id)+"/gate", bytes.NewReader(body), http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var run Run
	return &run, decode(resp, &run)
}

// Log returns run id's log as it is now; with stamped, each line starts
// with when it arrived. The caller closes it.
func (c *Client) Log(ctx context.Context, id int64, stamped bool) (io.ReadCloser, error) {
	path := runPath(id) + "/log"
	if stamped {
		path += "?timestamps=1"
	}
	resp, err := c.Do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// FollowOptions tune Follow.
type FollowOptions struct {
	// Stamped prefixes each line with when it arrived (by long polls of the
	// raw log, which stamps lines; the event stream carries no times).
	Stamped bool
	// Progress, if set, is told of each change of the run's state or
	// progress.
	Progress func(*Run)
}

// MaxFollowFailures is how many reconnects in a row may fail to get any
// further before Follow gives up: with its backoff, about two minutes.
const MaxFollowFailures = 20

// Follow writes run id's log to out from the start until the run ends, and
// returns the finished run. It resumes a dropped stream where it stopped,
// so every line is written once; it gives up after MaxFollowFailures
// reconnects in a row that got no further.
func (c *Client) Follow(ctx context.Context, id int64, out io.Writer, opts FollowOptions) (*Run, error) {
	once := func(offset *int64) (*Run, error) { return c.followEvents(ctx, id, offset, out, opts.Progress) }
	if opts.Stamped {
		once = func(offset *int64) (*Run, error) { return c.pollStamped(ctx, id, offset, out) }
	}
	var offset int64
	failures := 0 // in a row, without getting further
	for {
		before := offset
		run, err := once(&offset)
		if run != nil || ctx.Err() != nil {
			return run, err
		}
		if _, ok := errors.AsType[*UnreachableError](err); !ok {
			return nil, err
		}
		if offset > before {
			failures = 0 // a flaky link that keeps delivering is followed for good
		}
		failures++
		if failures > MaxFollowFailures {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(Backoff(failures)):
		}
	}
}

// Backoff is the wait before reconnect n (from 1): doubling from 200 ms up
// to 6.4 s, with jitter of ±50% so that many clients cut at once do not
// come back at once.
func Backoff(n int) time.Duration {
	d := 200 * time.Millisecond << min(n-1, 5)
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// WriteError is a failure to write the log to the caller's writer.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "write log: " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

func (c *Client) followEvents(ctx context.Context, id int64, offset *int64, out io.Writer, progress func(*Run)) (*Run, error) {
	hdr := http.Header{"Last-Event-Id": {strconv.FormatInt(*offset, 10)}, "Accept": {"text/event-stream"}}
	resp, err := c.Do(ctx, http.MethodGet, runPath(id)+"/events", nil, hdr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		// Resumed at the end of a finished run: nothing more to come.
		return c.Run(ctx, id)
	}
	dec := sse.NewDecoder(resp.Body)
	for {
		ev, err := dec.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &UnreachableError{Msg: fmt.Sprintf("stream interrupted: %v", err), Err: err}
		}
		switch ev.Name {
		case "log":
			var buf []byte
			for _, l := range ev.Lines() {
				buf = append(buf, l...)
				buf = append(buf, '\n')
			}
			if _, err := out.Write(buf); err != nil {
				return nil, &WriteError{Err: err}
			}
			if off, err := strconv.ParseInt(ev.ID, 10, 64); err == nil {
				*offset = off
			}
		case "status", "end":
			var run Run
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
// raw log until the log is complete.
func (c *Client) pollStamped(ctx context.Context, id int64, offset *int64, out io.Writer) (*Run, error) {
	for {
		resp, err := c.Do(ctx, http.MethodGet, runPath(id)+"/log?timestamps=1&wait=30s&after="+strconv.FormatInt(*offset, 10), nil, nil)
		if err != nil {
			return nil, err
		}
		next, perr := strconv.ParseInt(resp.Header.Get("X-Log-Offset"), 10, 64)
		complete := resp.Header.Get("X-Log-Complete") == "true"
		_, err = io.Copy(out, resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, &UnreachableError{Msg: fmt.Sprintf("log interrupted: %v", err), Err: err}
		}
		if perr != nil {
			return nil, errors.New("the server sent no X-Log-Offset")
		}
		*offset = next
		if complete {
			return c.Run(ctx, id)
		}
	}
}
