package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/shiplog/shiplog/api"
)

const envJobs = `
jobs:
  deploy:
    deploys: {environment: $ENV, version: $VERSION}
    params:
      - {name: ENV, required: true, choices: [staging, production, eu]}
      - {name: VERSION, required: true}
    env: {GATE: $$GATE}
    run: |
      echo "deploying $VERSION to $ENV"
      [ "$VERSION" = bad ] && exit 1
      [ "$VERSION" = slow ] && while [ ! -e "$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done
      echo done
  other:
    run: echo "deploys nothing"
`

// The environments: each one's version from its last successful run (a
// failed one after it changes nothing), what is deploying there now, its
// history; environments a job names but none deployed to yet; runs of jobs
// that deploy nothing are in none.
func TestEnvironments(t *testing.T) {
	s := startServer(t, envJobs)
	deploy := func(env, version string) api.Run {
		r := s.trigger("deploy", map[string]string{"ENV": env, "VERSION": version})
		return r
	}
	s.waitRun(deploy("staging", "v1").ID, isFinished)
	s.waitRun(deploy("staging", "v2").ID, isFinished)
	bad := deploy("staging", "bad")
	s.waitRun(bad.ID, isFinished)
	s.waitRun(deploy("production", "v1").ID, isFinished)
	s.waitRun(s.trigger("other", nil).ID, isFinished)
	slow := deploy("production", "slow")
	s.waitRun(slow.ID, func(r *api.Run) bool { return r.State == api.Running })

	code, _, body := s.do("GET", "/api/environments", "")
	var envs []api.Environment
	if err := json.Unmarshal(body, &envs); code != 200 || err != nil {
		t.Fatalf("GET /api/environments: %d %v %s", code, err, body)
	}
	got := map[string]string{}
	for _, e := range envs {
		cur := "-"
		if e.Current != nil {
			cur = e.Current.Version
		}
		var deploying, history []string
		for _, r := range e.Deploying {
			deploying = append(deploying, r.Version)
		}
		for _, r := range e.History {
			history = append(history, r.Version+":"+string(r.State))
		}
		got[e.Name] = fmt.Sprintf("%s deploying=%v history=%v", cur, deploying, history)
	}
	want := map[string]string{
		"eu":         "- deploying=[] history=[]",
		"production": "v1 deploying=[slow] history=[slow:running v1:succeeded]",
		"staging":    "v2 deploying=[] history=[bad:failed v2:succeeded v1:succeeded]",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("environments\n got %v\nwant %v", got, want)
	}
	if envs[0].Name != "eu" || envs[1].Name != "production" {
		t.Errorf("not in order of name: %s, %s", envs[0].Name, envs[1].Name)
	}
	s.release(slow.ID)
	s.waitRun(slow.ID, isFinished)
}

// The Environments page shows each environment's version; Redeploy on a
// past success asks first, then starts the same job with its parameters.
func TestBrowserEnvironmentsRedeploy(t *testing.T) {
	s := startServer(t, envJobs)
	ctx := browser(t)
	failOnScriptErrors(t, ctx)
	v1 := s.trigger("deploy", map[string]string{"ENV": "staging", "VERSION": "v1"})
	s.waitRun(v1.ID, isFinished)
	s.waitRun(s.trigger("deploy", map[string]string{"ENV": "staging", "VERSION": "v2"}).ID, isFinished)
	must(t, ctx,
		chromedp.Navigate(s.URL+"/environments"),
		until(`document.querySelector('[data-testid=env-staging] [data-testid=env-version]')?.textContent === 'v2'`),
		until(`document.querySelector('[data-testid=env-production] [data-testid=env-version]')?.textContent === 'never deployed'`),
		// v1's row (the older one) asks, then redeploys.
		chromedp.Click(`[data-testid=env-staging] [data-testid=env-run]:nth-child(2) [data-testid=redeploy]`),
		chromedp.WaitVisible(`[data-testid=env-staging] [data-testid=env-run]:nth-child(2) [data-testid=redeploy-confirm]`),
		chromedp.Evaluate(`document.querySelector('[data-testid=env-staging] [data-testid=env-run]:nth-child(2) [data-testid=redeploy-confirm]').click(); true`, nil),
	)
	afterNavigation(t, ctx, `location.pathname.startsWith('/runs/') && document.querySelector('#run-head [data-testid=state]')?.textContent === 'succeeded'`)
	var loc string
	must(t, ctx, chromedp.Location(&loc))
	var id int64
	_, path, _ := strings.Cut(loc, "/runs/")
	if _, err := fmt.Sscanf(path, "%d", &id); err != nil {
		t.Fatalf("after redeploy at %s", loc)
	}
	r := s.waitRun(id, isFinished)
	if r.Version != "v1" || r.Environment != "staging" || r.RerunOf != v1.ID {
		t.Fatalf("redeploy made %+v", r)
	}
	must(t, ctx,
		chromedp.Navigate(s.URL+"/environments"),
		until(`document.querySelector('[data-testid=env-staging] [data-testid=env-version]')?.textContent === 'v1'`),
	)
	// On a phone, nothing sticks out.
	var out []string
	must(t, ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Reload(),
		until(`document.querySelector('[data-testid=env-staging]') !== null`), chromedp.Evaluate(offScreen, &out))
	if len(out) > 0 {
		t.Errorf("off screen at 390 px: %q", out)
	}
	must(t, ctx, chromedp.EmulateViewport(1400, 1000))
	if dir := os.Getenv("SHIPLOG_SCREENSHOTS"); dir != "" {
		// With something deploying, for the picture.
		s.waitRun(s.trigger("deploy", map[string]string{"ENV": "production", "VERSION": "v1"}).ID, isFinished)
		slow := s.trigger("deploy", map[string]string{"ENV": "production", "VERSION": "slow"})
		s.waitRun(slow.ID, func(r *api.Run) bool { return r.State == api.Running })
		var png []byte
		must(t, ctx, chromedp.Reload(), until(`document.querySelector('[data-testid=env-deploying]') !== null`), chromedp.CaptureScreenshot(&png))
		if err := os.WriteFile(filepath.Join(dir, "environments-light.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		s.release(slow.ID)
		s.waitRun(slow.ID, isFinished)
	}
}
