// Package notify tells the world about runs: webhooks with a generic JSON
// body or a Slack-compatible one, signed with HMAC-SHA256 over the
// timestamp and body (as Stripe signs), delivered in the background with
// retries and backoff, each attempt recorded for the run's delivery log.
// A run never waits for a notification.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Events a hook may ask for: a run's end, each outcome, and a run
// stopping at a gate.
var Events = []string{"succeeded", "failed", "canceled", "timed_out", "interrupted", "waiting"}

// Hook is one webhook.
type Hook struct {
	URL    string
	Format string   // "json" (default) or "slack"
	Events []string // the events it wants; all when empty
	Secret string   // HMAC key; unsigned when empty
}

// Wants reports whether h is for event.
func (h Hook) Wants(event string) bool { return len(h.Events) == 0 || slices.Contains(h.Events, event) }

// Target is where h delivers, as views may show it: scheme and host, no
// path, query or user (a Slack hook's secret is its path).
func (h Hook) Target() string {
	u, err := url.Parse(h.URL)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// Run is what a notification says of a run.
type Run struct {
	ID          int64             `json:"id"`
	Job         string            `json:"job"`
	State       string            `json:"state"`
	ExitCode    *int              `json:"exit_code"`
	Error       string            `json:"error,omitempty"`
	Params      map[string]string `json:"params"`
	TriggeredBy string            `json:"triggered_by"`
	Environment string            `json:"environment,omitempty"`
	Version     string            `json:"version,omitempty"`
	Question    string            `json:"question,omitempty"` // the gate it waits at
	URL         string            `json:"url"`
	DurationMS  *int64            `json:"duration_ms,omitempty"`
}

// Attempt is one try at delivering a notification.
type Attempt struct {
	Delivery string
	Event    string
	Target   string
	Try      int
	At       time.Time
	Status   int
	Error    string
	Took     time.Duration
	Final    bool
}

// Options tunes a Notifier.
type Options struct {
	Timeout  time.Duration // per attempt; 10s if zero
	Tries    int           // attempts per notification; 5 if zero
	Backoff  time.Duration // before the second try, doubled each time; 2s if zero
	Workers  int           // deliveries at once; 4 if zero
	Queue    int           // notifications waiting at most (more are dropped, logged); 1000 if zero
	Client   *http.Client  // nil: a client with Timeout
	Recorder func(ctx context.Context, run int64, a Attempt) error
}

// Notifier delivers notifications in the background.
type Notifier struct {
	opts Options
	log  *slog.Logger
	jobs chan delivery
	wg   sync.WaitGroup
	// ctx ends at Close: waits and attempts under way stop.
	ctx  context.Context
	stop context.CancelFunc
}

type delivery struct {
	id    string
	hook  Hook
	event string
	run   Run
}

// New starts a notifier; Close stops it.
func New(log *slog.Logger, opts Options) *Notifier {
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Tries == 0 {
		opts.Tries = 5
	}
	if opts.Backoff == 0 {
		opts.Backoff = 2 * time.Second
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	if opts.Queue == 0 {
		opts.Queue = 1000
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: opts.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	n := &Notifier{opts: opts, log: log, jobs: make(chan delivery, opts.Queue)}
	n.ctx, n.stop = context.WithCancel(context.Background())
	for range opts.Workers {
		n.wg.Add(1)
		go n.work()
	}
	return n
}

// Close stops delivering: what is under way is abandoned at its next wait.
func (n *Notifier) Close() {
	n.stop()
	n.wg.Wait()
}

// Notify queues event of run for each hook that wants it. It never
// blocks: with the queue full, the notification is dropped and logged.
func (n *Notifier) Notify(hooks []Hook, event string, run Run) {
	for _, h := range hooks {
		if !h.Wants(event) {
			continue
		}
		var b [8]byte
		_, _ = rand.Read(b[:])
		d := delivery{id: hex.EncodeToString(b[:]), hook: h, event: event, run: run}
		select {
		case n.jobs <- d:
		default:
			n.log.Warn("notification dropped: too many waiting", "run_id", run.ID, "event", event, "target", h.Target())
		}
	}
}

func (n *Notifier) work() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case d := <-n.jobs:
			n.deliver(d)
		}
	}
}

// deliver tries d until it is taken (a 2xx), refused for good (4xx but
// 408 and 429) or out of tries, waiting longer between tries.
func (n *Notifier) deliver(d delivery) {
	body, err := Body(d.hook.Format, d.event, d.run, time.Now())
	if err != nil {
		n.log.Error("notification body", "err", err)
		return
	}
	wait := n.opts.Backoff
	for try := 1; try <= n.opts.Tries; try++ {
		a := n.attempt(d, body, try)
		retry := a.Status == 0 || a.Status >= 500 || a.Status == http.StatusRequestTimeout || a.Status == http.StatusTooManyRequests
		a.Final = !retry || try == n.opts.Tries || (a.Status >= 200 && a.Status < 300)
		if n.opts.Recorder != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := n.opts.Recorder(ctx, d.run.ID, a); err != nil {
				n.log.Warn("record a notification attempt", "run_id", d.run.ID, "err", err)
			}
			cancel()
		}
		if a.Final {
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func (n *Notifier) attempt(d delivery, body []byte, try int) Attempt {
	a := Attempt{Delivery: d.id, Event: d.event, Target: d.hook.Target(), Try: try, At: time.Now().UTC().Truncate(time.Millisecond)}
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.hook.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "shiplog")
	req.Header.Set("Shiplog-Event", d.event)
	req.Header.Set("Shiplog-Delivery", d.id)
	if d.hook.Secret != "" {
		req.Header.Set("Shiplog-Signature", Sign(d.hook.Secret, time.Now(), body))
	}
	start := time.Now()
	resp, err := n.opts.Client.Do(req)
	a.Took = time.Since(start)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may hold a secret
		}
		a.Error = err.Error()
		return a
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	a.Status = resp.StatusCode
	return a
}

// Sign is the Shiplog-Signature header of body sent at t: t=UNIX,v1=HEX
// where HEX is HMAC-SHA256(secret, "UNIX.body"). A receiver recomputes it
// and refuses an old t (a replay).
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Body is what a hook of format is sent for event of run.
func Body(format, event string, run Run, now time.Time) ([]byte, error) {
	switch format {
	case "", "json":
		return json.Marshal(struct {
			Event  string    `json:"event"`
			SentAt time.Time `json:"sent_at"`
			Run    Run       `json:"run"`
		}{event, now.UTC(), run})
	case "slack":
		return json.Marshal(map[string]string{"text": slackText(event, run)})
	}
	return nil, fmt.Errorf("notify: unknown format %q", format)
}

// slackText is a one-line message, escaped as Slack wants (&, <, >).
func slackText(event string, run Run) string {
	icon := map[string]string{"succeeded": "✅", "failed": "❌", "canceled": "⏹️", "timed_out": "⏱️", "interrupted": "⚠️", "waiting": "✋"}[event]
	what := fmt.Sprintf("%s #%d", run.Job, run.ID)
	if run.Version != "" || run.Environment != "" {
		what += fmt.Sprintf(" (%s to %s)", run.Version, run.Environment)
	}
	var text string
	if event == "waiting" {
		text = fmt.Sprintf("%s %s waits for approval: %s", icon, slackEscape(what), slackEscape(run.Question))
	} else {
		text = fmt.Sprintf("%s %s %s", icon, slackEscape(what), slackEscape(stateWords(event)))
		if run.Error != "" {
			text += ": " + slackEscape(run.Error)
		}
	}
	if run.URL != "" {
		text += fmt.Sprintf(" <%s|open>", run.URL)
	}
	return text
}

func stateWords(s string) string {
	if s == "timed_out" {
		return "timed out"
	}
	return s
}

func slackEscape(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
