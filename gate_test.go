package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/shiplog/shiplog/api"
)

// gateJobs stop at a gate: the script learns the answer from the exit code
// of `shiplog gate`, which the runner puts on the job's PATH.
const gateJobs = `
jobs:
  deploy:
    approvers: [alice, bob]
    four_eyes: true
    run: |
      echo "migrating next"
      shiplog gate "Run migrations on production?" --timeout 1m
      code=$?
      echo "gate said $code"
      [ $code -eq 0 ] && echo "migrated"
      exit $code
  quick-gate:
    run: |
      shiplog gate "Anyone there?" --timeout 1s
      echo "gate said $?"
  no-question:
    run: shiplog gate ""; echo "gate said $?"
  open-gate:
    run: |
      echo "staging is green"
      shiplog gate "Deploy to production?" --timeout 5m
      echo "gate said $?"
`

// A run stops at a gate, says so (waiting, the question, who may answer)
// in the API, and goes on with the answer: approve through the API (the
// CLI's client) exits the gate 0, reject through the CLI 1, with who and
// why in the log; only the job's approvers may answer, and with four_eyes
// not the person who triggered it; a gate nobody answers times out (2).
func TestGateStopsTheScriptUntilAnswered(t *testing.T) {
	auth, tok := tokens(t, map[string]string{"bob": "deployer", "alice": "deployer", "carol": "deployer"})
	s := startServer(t, gateJobs+auth)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	as := func(name string) *api.Client {
		c, err := api.New(s.URL, tok[name])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	trigger := func(job string) *api.Run {
		r, err := as("bob").Trigger(ctx, job, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	waiting := func(r *api.Run) bool { return r.State == api.Waiting }

	// Approved.
	run := trigger("deploy")
	got := s.waitRunAs(tok["bob"], run.ID, waiting)
	if len(got.Gates) != 1 || got.Gates[0].Question != "Run migrations on production?" || got.Gates[0].Decision != "" ||
		!got.Gates[0].FourEyes || strings.Join(got.Gates[0].Approvers, ",") != "alice,bob" || got.Gates[0].Line != 1 {
		t.Fatalf("waiting run's gates: %+v", got.Gates)
	}
	if got.State.Finished() {
		t.Fatal("a waiting run is not finished")
	}
	for who, want := range map[string]string{"bob": "four_eyes", "carol": "only alice, bob may answer"} {
		_, err := as(who).Decide(ctx, run.ID, "approve", "")
		if se, ok := errors.AsType[*api.StatusError](err); !ok || se.Status != http.StatusForbidden || !strings.Contains(se.Error(), want) {
			t.Errorf("%s answering: %v, want 403 %q", who, err, want)
		}
	}
	if _, err := as("alice").Decide(ctx, run.ID, "approve", "looks good"); err != nil {
		t.Fatal(err)
	}
	done := s.waitRunAs(tok["bob"], run.ID, isFinished)
	log := string(s.logFile(run.ID))
	if done.State != api.Succeeded || !strings.Contains(log, "gate said 0\nmigrated\n") {
		t.Fatalf("approved: %s, log %q", done.State, log)
	}
	if g := done.Gates[0]; g.Decision != "approved" || g.By != "alice" || g.Reason != "looks good" || g.DecidedAt == nil {
		t.Fatalf("approved gate %+v", g)
	}
	lines := strings.Split(log, "\n")
	if !strings.HasPrefix(lines[1], "[shiplog: gate 1: Run migrations on production? (waiting until ") ||
		!strings.HasPrefix(lines[2], "[shiplog: gate 1 approved by alice at ") || !strings.HasSuffix(lines[2], ": looks good]") {
		t.Errorf("the gate is not in the log where it stood: %q", lines[:3])
	}

	// Rejected, through the CLI.
	run = trigger("deploy")
	s.waitRunAs(tok["bob"], run.ID, waiting)
	t.Setenv("SHIPLOG_TOKEN", tok["alice"])
	var out, errOut strings.Builder
	if err := run2(ctx, []string{"reject", fmt.Sprint(run.ID), "--server", s.URL, "--reason", "not now"}, &out, &errOut); err != nil {
		t.Fatalf("shiplog reject: %v %s", err, errOut.String())
	}
	if want := fmt.Sprintf("#%d deploy: gate rejected\n", run.ID); out.String() != want {
		t.Errorf("shiplog reject printed %q, want %q", out.String(), want)
	}
	done = s.waitRunAs(tok["bob"], run.ID, isFinished)
	log = string(s.logFile(run.ID))
	if done.State != api.Failed || done.ExitCode == nil || *done.ExitCode != 1 || !strings.Contains(log, "gate said 1\n") || strings.Contains(log, "migrated") {
		t.Fatalf("rejected: %s exit %v, log %q", done.State, done.ExitCode, log)
	}
	// No gate open now: 409, and the CLI exits 65; a bad decision: 400.
	if err := run2(ctx, []string{"approve", fmt.Sprint(run.ID), "--server", s.URL}, &out, &errOut); exitCode(err) != exitInvalid {
		t.Errorf("shiplog approve without a gate: %v", err)
	}
	bearer := []string{"Content-Type", "application/json", "Authorization", "Bearer " + tok["alice"]}
	if code, _, body := s.do("POST", fmt.Sprintf("/api/runs/%d/gate", run.ID), `{"decision":"maybe"}`, bearer...); code != http.StatusBadRequest {
		t.Errorf("decision maybe: %d %s", code, body)
	}

	// Nobody answers: timed out, exit 2.
	run = trigger("quick-gate")
	done = s.waitRunFor(tok["bob"], run.ID, isFinished, 20*time.Second)
	if log := string(s.logFile(run.ID)); !strings.Contains(log, "gate said 2\n") || done.Gates[0].Decision != "timed_out" {
		t.Fatalf("timed out: gates %+v, log %q", done.Gates, log)
	}
	// Canceled while it waits: the gate ends with the run.
	run = trigger("deploy")
	s.waitRunAs(tok["bob"], run.ID, waiting)
	if _, err := as("bob").Cancel(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	done = s.waitRunAs(tok["bob"], run.ID, isFinished)
	if done.State != api.Canceled || done.Gates[0].Decision != "ended" || !strings.Contains(done.Gates[0].Reason, "canceled") {
		t.Fatalf("canceled while waiting: %s, gates %+v", done.State, done.Gates)
	}
	// A gate without a question is refused at once (usage: 64).
	run = trigger("no-question")
	s.waitRunAs(tok["bob"], run.ID, isFinished)
	if log := string(s.logFile(run.ID)); !strings.Contains(log, "gate said 64\n") {
		t.Fatalf("no question: log %q", log)
	}
}

// exitCode is the code the CLI exits with for err.
func exitCode(err error) int {
	if ee, ok := errors.AsType[*exitError](err); ok {
		return ee.code
	}
	if err != nil {
		return exitCLIError
	}
	return 0
}

// run2 runs the CLI as main does.
func run2(ctx context.Context, args []string, stdout, stderr *strings.Builder) error {
	return run(ctx, args, stdout, stderr)
}

// The run page of a run at a gate shows it waiting, the question, who may
// answer and Approve and Reject; approving with a reason lets the script
// go on, and the page then shows the answer where the gate stood.
func TestBrowserGate(t *testing.T) {
	s := startServer(t, gateJobs)
	ctx := browser(t)
	failOnScriptErrors(t, ctx)
	run := s.trigger("open-gate", nil)
	must(t, ctx,
		// The dashboard says what it waits for.
		chromedp.Navigate(s.URL+"/"),
		until(`document.querySelector('[data-testid=active-gate]')?.textContent === 'Approve? Deploy to production?'`),
		until(`document.querySelector('[data-testid=active-run] [data-testid=state]').textContent === 'waiting'`),
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(`document.querySelector('#run-head [data-testid=state]').textContent === 'waiting'`),
		until(`document.querySelector('[data-testid=gate-question]')?.textContent === 'Deploy to production?'`),
		until(`[...document.querySelectorAll('.log-view .l .t')].some(e => e.textContent.startsWith('[shiplog: gate 1: Deploy to production? (waiting until '))`),
		chromedp.SendKeys(`[data-testid=gate-reason]`, "tested on staging"),
	)
	if dir := os.Getenv("SHIPLOG_SCREENSHOTS"); dir != "" {
		var png []byte
		must(t, ctx, chromedp.CaptureScreenshot(&png))
		if err := os.WriteFile(filepath.Join(dir, "gate-light.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(t, ctx, chromedp.Click(`[data-testid=approve]`))
	afterNavigation(t, ctx, `document.querySelector('#run-head [data-testid=state]')?.textContent === 'succeeded'`)
	must(t, ctx,
		until(`document.querySelector('[data-testid=gate-past]')?.textContent.includes('approved by anonymous@127.0.0.1')`),
		until(`document.querySelector('[data-testid=gate-past]').textContent.includes('tested on staging')`),
		until(`!document.querySelector('[data-testid=gate]')`),
		until(logHas("gate said 0")),
	)
	done := s.waitRun(run.ID, isFinished)
	if g := done.Gates[0]; g.Decision != "approved" || g.Reason != "tested on staging" {
		t.Fatalf("gate %+v", g)
	}
}

// screenshotDir is where tests write screenshots for the README
// (SHIPLOG_SCREENSHOTS), or "".
func screenshotDir() string { return os.Getenv("SHIPLOG_SCREENSHOTS") }

// shot writes a screenshot of the page to dir/name.
func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	var png []byte
	must(t, ctx, chromedp.CaptureScreenshot(&png))
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A server killed while a run waits at a gate: when it is back the run is
// interrupted, as any running run is, and its gate ended with it; the
// script is gone (its runner's death took it).
func TestGateAcrossAServerRestart(t *testing.T) {
	dir, cfgPath, gate := writeConfig(t, gateJobs)
	addr := freeAddr(t)
	args := []string{"--addr", addr, "--config", cfgPath, "--data", filepath.Join(dir, "data")}
	first := startChild(t, args...)
	s := &testServer{t: t, URL: first.URL, Data: filepath.Join(dir, "data"), Gate: gate}
	run := s.trigger("open-gate", nil)
	s.waitRun(run.ID, func(r *api.Run) bool { return r.State == api.Waiting })
	first.kill9(t)
	startChild(t, args...)
	done := s.waitRun(run.ID, isFinished)
	if done.State != api.Interrupted || len(done.Gates) != 1 || done.Gates[0].Decision != "ended" || !strings.Contains(done.Gates[0].Reason, "interrupted") {
		t.Fatalf("after the restart: %s, gates %+v", done.State, done.Gates)
	}
}
