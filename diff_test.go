package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// Each run prints its own times, durations and ids; only a real change
// shows in the comparison with the last successful run.
const diffJobs = `
jobs:
  build:
    params: [{name: BREAK, default: "no"}]
    run: |
      for i in 1 2 3 4 5 6 7 8 9 10; do
        echo "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ) step $i took $i.$(( $$ % 10 ))s id $(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')a1"
      done
      printf '\033[32mcompiled\033[0m in %dms\n' $(( $$ % 1000 ))
      if [ "$BREAK" = yes ]; then echo "error: tests failed: auth_test.go:12"; exit 1; fi
      echo "all tests passed"
`

// The comparison with the job's last successful run ignores what always
// changes (timestamps, durations, hex ids, colours) and shows what does:
// via the API and on the page the run links it from.
func TestDiffWithLastSuccess(t *testing.T) {
	s := startServer(t, diffJobs)
	good := s.trigger("build", nil)
	s.waitRun(good.ID, isFinished)
	same := s.trigger("build", nil)
	s.waitRun(same.ID, isFinished)
	bad := s.trigger("build", map[string]string{"BREAK": "yes"})
	s.waitRun(bad.ID, isFinished)

	get := func(path string) diffResult {
		t.Helper()
		code, _, body := s.do("GET", path, "")
		var d diffResult
		if err := json.Unmarshal(body, &d); code != 200 || err != nil {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		return d
	}
	if d := get(fmt.Sprintf("/api/runs/%d/diff", same.ID)); d.Against != good.ID || len(d.Hunks) != 0 {
		t.Fatalf("two runs that differ only in times and ids: %+v", d)
	}
	d := get(fmt.Sprintf("/api/runs/%d/diff", bad.ID))
	if d.Against != same.ID || len(d.Hunks) != 1 {
		t.Fatalf("against %d, %d hunks, want #%d and one: %+v", d.Against, len(d.Hunks), same.ID, d)
	}
	var changes []string
	for _, l := range d.Hunks[0] {
		if l.Kind != " " {
			changes = append(changes, l.Kind+l.Text)
		}
	}
	if strings.Join(changes, "|") != "-all tests passed|+error: tests failed: auth_test.go:12" {
		t.Errorf("changes %q", changes)
	}
	if first := d.Hunks[0][0]; first.Kind != " " || first.A != 9 || first.B != 9 {
		t.Errorf("the hunk starts at %+v, want 3 lines of context before line 12", first)
	}
	// No earlier success: 404 saying so; ?against= any run.
	if code, _, body := s.do("GET", fmt.Sprintf("/api/runs/%d/diff", good.ID), ""); code != 404 || !strings.Contains(string(body), "no earlier successful run") {
		t.Errorf("first run: %d %s", code, body)
	}
	if d := get(fmt.Sprintf("/api/runs/%d/diff?against=%d", good.ID, bad.ID)); d.Against != bad.ID || len(d.Hunks) != 1 {
		t.Errorf("?against: %+v", d)
	}
	if code, _, _ := s.do("GET", fmt.Sprintf("/api/runs/%d/diff?against=x", good.ID), ""); code != 400 {
		t.Errorf("?against=x: %d", code)
	}

	ctx := browser(t)
	failOnScriptErrors(t, ctx)
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, bad.ID)),
		chromedp.WaitVisible(`[data-testid=compare]`),
		chromedp.Click(`[data-testid=compare]`),
	)
	afterNavigation(t, ctx, `document.querySelector('[data-testid=diff-add] .t')?.textContent === 'error: tests failed: auth_test.go:12'`)
	must(t, ctx, until(`document.querySelector('[data-testid=diff-del] .t').textContent === 'all tests passed'`))
	if dir := screenshotDir(); dir != "" {
		shot(t, ctx, dir, "diff-light.png")
	}
}
