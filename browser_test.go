package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/shiplog/shiplog/api"
)

// browser starts headless Chromium for one test; tests skip without it (CI
// installs it).
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (apt-get install chromium)")
	}
	// Removed by hand once the browser has closed: t.TempDir's cleanup can
	// race Chromium's last writes.
	profile, err := os.MkdirTemp("", "shiplog-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1400, 1000),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx) // closes the browser and waits for it
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		_ = os.RemoveAll(profile)
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func must(t *testing.T, ctx context.Context, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// until waits for a JavaScript expression to be true.
func until(expr string) chromedp.Action {
	return chromedp.Poll(expr, nil, chromedp.WithPollingInterval(20*time.Millisecond))
}

// colorScheme makes the page see prefers-color-scheme: scheme.
func colorScheme(scheme string) chromedp.Action {
	return emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}})
}

// afterNavigation waits for expr on the page a click navigated to: a poll
// begun before the new page replaces the old one is retried.
func afterNavigation(t *testing.T, ctx context.Context, expr string) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		err := chromedp.Run(ctx, chromedp.WaitReady("body"), until(expr))
		if err == nil {
			return
		}
		if attempt == 5 || (!strings.Contains(err.Error(), "navigated") && !strings.Contains(err.Error(), "context with specified id")) {
			t.Fatal(err)
		}
	}
}

// logHas is true once a rendered log row's text equals text.
func logHas(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('.log-view .l .t')].some(e => e.textContent === %q)`, text)
}

const browserConfig = `
jobs:
  deploy:
    description: Deploy with a gate the test opens
    confirm: true
    env: {GATE: $$GATE}
    params:
      - {name: ENV, required: true, choices: [staging, prod]}
      - {name: VERSION, default: v1.0.0, pattern: 'v[0-9]+\.[0-9]+\.[0-9]+'}
    run: |
      printf '\033[1;32mdeploying\033[0m %s to %s\n' "$VERSION" "$ENV"
      printf 'bar 10%%\rbar 55%%\rbar 100%%\n'
      echo "::group::Details"
      echo "inside the group"
      echo "::endgroup::"` + gateScript + `
  ticker:
    env: {GATE: $$GATE}
    run: |
      i=0
      while [ ! -e "$GATE/release-$SHIPLOG_RUN_ID" ]; do i=$((i+1)); echo "tick $i"; sleep 0.005; done
      echo "released"
  growing:
    env: {GATE: $$GATE}
    run: |
      i=0
      while [ ! -e "$GATE/grow-$SHIPLOG_RUN_ID" ]; do i=$((i+1)); echo "tick $i"; sleep 0.005; done
      echo "::progress::50 halfway"
      echo "::error title=check::the header grows with this"
      while [ ! -e "$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.02; done
  hidden:
    run: printf 'evil\342\200\256exe.live\n'
  colours:
    run: |
      for c in 30 31 32 33 34 35 36 37 90 91 92 93 94 95 96 97; do printf '\033[%sm colour %s \033[0m\n' $c $c; done
      printf '\033[2mfaint\033[0m \033[1;30mbold black\033[0m\n'
      echo "::group::A group"
      echo "::endgroup::"
      echo "::warning::careful"
      echo "::error::broken"
      echo "[shiplog: a marker]"
  commands:
    run: |
      echo "before"
      echo "::group::Build"
      echo "compiling"
      echo "::endgroup::"
      echo "##[group]Test"
      echo "testing"
      echo "##[endgroup]"
      echo "::progress::50 halfway"
      echo "::error file=app.go,line=12,col=5,title=Build%3A failed::it broke"
      echo "::warning::w2"
      echo "::notice::n3"
      echo "::notice::n4"
      echo "::notice::n5"
      echo "::stop-commands::tok"
      echo "::error::printed, not an annotation"
      echo "::tok::"
      echo "after"
  pull:
    description: Redraws its progress in place, as docker compose does
    run: |
      echo "::group::Pull images"
      for n in web db cache; do printf '%-6s \033[33mwaiting\033[0m\n' $n; done
      for p in 25 50 75 100; do
        printf '\033[3A'
        for n in web db cache; do
          bar=$(printf '%*s' $((p / 5)) '' | tr ' ' '#')
          printf '\r\033[2K%-6s \033[36m%3d%%\033[0m [%-20s]\n' $n $p "$bar"
        done
        sleep 0.05
      done
      echo "::endgroup::"
      echo "::group::Start services"
      for n in web db cache; do printf '\033[32m✔\033[0m Container %-6s \033[2mStarted\033[0m\n' $n; sleep 0.05; done
      echo "::endgroup::"
      echo "::group::Smoke test"
      printf 'GET https://staging.example.com/healthz \033[1;32m200 OK\033[0m\n'
      echo "::warning title=latency::p99 420 ms, over the 300 ms budget"
      echo "::endgroup::"
      printf '\033[1mdeployed\033[0m: see https://staging.example.com\n'
  numbers:
    params: [{name: N, default: "500"}]
    run: |
      awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) printf "row %d of %d%s\n", i, n, (i % 97 == 0 ? " needle" : "") }'
`

func TestBrowserTriggerFromFormWatchLiveAndCancel(t *testing.T) {
	s := startServer(t, browserConfig)
	ctx := browser(t)

	// A value failing its pattern comes back beside its field.
	must(t, ctx,
		chromedp.Navigate(s.URL+"/jobs/deploy"),
		chromedp.WaitVisible(`[data-testid=run-form]`),
		chromedp.SetValue(`#p-ENV`, "prod"),
		chromedp.SetValue(`#p-VERSION`, "latest; rm -rf /"),
		chromedp.Click(`[data-testid=submit]`),
		chromedp.WaitVisible(`[data-testid=error-VERSION]`),
	)
	var msg string
	must(t, ctx, chromedp.Text(`[data-testid=error-VERSION]`, &msg))
	if !strings.Contains(msg, "must match") {
		t.Errorf("field error %q", msg)
	}
	// Fix it, confirm, and land on the run page watching it live.
	must(t, ctx,
		chromedp.SetValue(`#p-VERSION`, "v2.0.1"),
		chromedp.Click(`[data-testid=submit]`),
		chromedp.WaitVisible(`[data-testid=confirm]`),
		chromedp.Click(`[data-testid=confirm-run]`),
		chromedp.WaitVisible(`[data-testid=log-view]`),
		until(logHas("deploying v2.0.1 to prod")),
		until(logHas("waiting for the gate")),
	)
	var loc string
	must(t, ctx, chromedp.Location(&loc))
	var id int64
	if _, err := fmt.Sscanf(loc, s.URL+"/runs/%d", &id); err != nil {
		t.Fatalf("after submit at %s", loc)
	}
	// A \r progress line shows its final state.
	must(t, ctx, until(logHas("bar 100%")))
	// Lines printed now appear live, and the state follows.
	s.release(id)
	must(t, ctx,
		until(logHas("released")),
		until(`document.querySelector('#run-head [data-testid=state]').textContent === 'succeeded'`),
	)
	// Groups collapse.
	must(t, ctx,
		chromedp.Evaluate(`document.querySelector('.l.grp .t').click(); true`, nil),
		until(`document.querySelector('.l.grp.closed') && !`+logHas("inside the group")),
	)

	// Cancel a run from its page.
	run := s.trigger("deploy", map[string]string{"ENV": "staging"})
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(logHas("waiting for the gate")),
		// Cancel asks first.
		until(`!document.querySelector('[data-testid=cancel-confirm]').checkVisibility()`),
		chromedp.Click(`[data-testid=cancel]`),
		chromedp.WaitVisible(`[data-testid=cancel-confirm]`),
		// Clicked from script: the form's navigation must not race the
		// click's own bookkeeping in chromedp.
		chromedp.Evaluate(`document.querySelector('[data-testid=cancel-confirm]').click(); true`, nil),
	)
	afterNavigation(t, ctx, `document.querySelector('#run-head [data-testid=state]')?.textContent === 'canceled'`)
	if got := s.waitRun(run.ID, isFinished); got.State != "canceled" {
		t.Errorf("state %s", got.State)
	}
	// Who canceled shows in the header and at the end of the log.
	must(t, ctx,
		until(`document.querySelector('[data-testid=run-error]')?.textContent === 'canceled by anonymous@127.0.0.1'`),
		until(`[...document.querySelectorAll('.log-view .l.marker .t')].some(e => e.textContent.startsWith('[shiplog: canceled by anonymous@127.0.0.1 at '))`),
	)
}

func TestBrowserPermalinkAndSearch(t *testing.T) {
	s := startServer(t, browserConfig)
	ctx := browser(t)
	run := s.trigger("numbers", nil)
	s.waitRun(run.ID, isFinished)
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d#L250", s.URL, run.ID)),
		until(`document.querySelector('#L250.target') !== null`),
	)
	var visible bool
	must(t, ctx, chromedp.Evaluate(`(() => {
		const r = document.getElementById('L250').getBoundingClientRect();
		const v = document.querySelector('.log-view').getBoundingClientRect();
		return r.top >= v.top && r.bottom <= v.bottom;
	})()`, &visible))
	if !visible {
		t.Error("#L250 is not scrolled into view")
	}
	// Search finds and jumps between matches.
	must(t, ctx,
		chromedp.SendKeys(`[data-testid=search]`, "NEEDLE"),
		until(`document.querySelector('[data-testid=search-count]').textContent === '1 of 5'`),
		until(`document.querySelector('.l.match.current .t')?.textContent === 'row 97 of 500 needle'`),
		chromedp.Click(`[data-act=next]`),
		until(`document.querySelector('[data-testid=search-count]').textContent === '2 of 5'`),
		until(`document.querySelector('.l.match.current .t')?.textContent === 'row 194 of 500 needle'`),
	)
	// The match is marked, not the whole line; the case is the line's.
	var marks []string
	must(t, ctx, chromedp.Evaluate(`[...document.querySelectorAll('.l.match.current mark.hit')].map(m => m.textContent)`, &marks))
	if !slices.Equal(marks, []string{"needle"}) {
		t.Errorf("marked %q in the current match, want [needle]", marks)
	}
	// Enter while the typing pause has not ended searches the new text at
	// once, rather than stepping through the old matches.
	var query string
	must(t, ctx, chromedp.Evaluate(`(() => {
		const el = document.querySelector('[data-testid=search]');
		el.value = 'row 250 of';
		el.dispatchEvent(new Event('input'));
		el.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));
		return window.shiplogLog.query;
	})()`, &query))
	if query != "row 250 of" {
		t.Errorf("Enter during the pause searched %q", query)
	}
	must(t, ctx,
		until(`document.querySelector('[data-testid=search-count]').textContent === '1 of 1'`),
		until(`document.querySelector('.l.match.current mark.hit')?.textContent === 'row 250 of'`),
	)

	// Match case, and regular expressions (matched by the server: an
	// invalid one says why).
	setQuery := func(q string) chromedp.Action {
		return chromedp.Evaluate(fmt.Sprintf(`(() => {
			const el = document.querySelector('[data-testid=search]');
			el.value = %q;
			el.dispatchEvent(new Event('input'));
			el.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));
			return true;
		})()`, q), nil)
	}
	const count = `document.querySelector('[data-testid=search-count]').textContent`
	must(t, ctx,
		setQuery("NEEDLE"),
		until(count+` === '1 of 5'`),
		chromedp.Click(`[data-testid=search-case]`),
		until(count+` === 'no matches'`),
		chromedp.Click(`[data-testid=search-case]`),
		until(count+` === '1 of 5'`),
		chromedp.Click(`[data-testid=search-regex]`),
		setQuery(`^row 9[0-9] of`),
		until(count+`.startsWith('1 of 10')`),
		until(`document.querySelector('.l.match.current .t')?.textContent === 'row 90 of 500'`),
		setQuery(`row (`),
		until(count+`.startsWith('invalid regular expression')`),
	)
}

func TestBrowserBigLogOpensAtTailLoadsEarlierAndSearchesAll(t *testing.T) {
	s := startServer(t, browserConfig)
	ctx := browser(t)
	run := s.trigger("numbers", map[string]string{"N": "100000"})
	s.waitRun(run.ID, isFinished)
	page := fmt.Sprintf("%s/runs/%d", s.URL, run.ID)
	windowText := `(document.querySelector('[data-testid=log-window]')?.textContent || '')`

	// Opens on its last lines, saying where the window begins.
	start := time.Now()
	must(t, ctx,
		chromedp.Navigate(page),
		until(logHas("row 100000 of 100000")),
		until(windowText+`.startsWith('Showing lines 95,001–100,000. 95,000 earlier lines')`),
	)
	t.Logf("100,000-line log usable at its tail in %v", time.Since(start).Round(time.Millisecond))

	// Scrolling to the top loads earlier lines and keeps what was in view.
	var rows int
	must(t, ctx,
		chromedp.Evaluate(`document.querySelector('.log-view').scrollTop = 0; true`, nil),
		until(`!`+windowText+`.startsWith('Showing lines 95,001')`),
		until(logHas("row 95001 of 100000")),
		until(logHas("row 94990 of 100000")),
		chromedp.Evaluate(`document.querySelectorAll('.log-view .l').length`, &rows),
	)
	if rows > 400 || rows < 20 {
		t.Errorf("%d rows in the DOM", rows)
	}
	var inView bool
	must(t, ctx, chromedp.Evaluate(`(() => {
		const r = document.getElementById('L95001').getBoundingClientRect();
		const v = document.querySelector('.log-view').getBoundingClientRect();
		return r.top >= v.top && r.bottom <= v.bottom;
	})()`, &inView))
	if !inView {
		t.Error("the line that was at the top moved out of view when earlier lines came in")
	}

	// A permalink near the start opens there, not at the tail.
	must(t, ctx,
		chromedp.Navigate(page+"#L123"),
		chromedp.Reload(),
		until(`document.querySelector('#L123.target') !== null`),
		until(logHas("row 123 of 100000")),
	)
	// Back to the end.
	must(t, ctx,
		chromedp.Evaluate(`document.querySelector('[data-testid=jump]').click(); true`, nil),
		until(logHas("row 100000 of 100000")),
	)
	// Search covers the whole log, not only what is loaded, and jumps there.
	must(t, ctx,
		chromedp.SendKeys(`[data-testid=search]`, "row 777 of"),
		until(`document.querySelector('[data-testid=search-count]').textContent === '1 of 1 in the whole log'`),
		until(`document.querySelector('.l.match.current .t')?.textContent === 'row 777 of 100000'`),
	)
}

// A live log follows its end until the reader scrolls up; "Jump to latest"
// brings following back.
func TestBrowserFollowStopsOnScrollUpAndJumpResumes(t *testing.T) {
	s := startServer(t, browserConfig)
	ctx := browser(t)
	run := s.trigger("ticker", nil)
	defer func() { s.release(run.ID); s.waitRun(run.ID, isFinished) }() // also when the test fails early
	const (
		atEnd     = `(() => { const v = document.querySelector('.log-view'); return v.scrollTop + v.clientHeight >= v.scrollHeight - 40; })()`
		jumpShown = `document.querySelector('[data-testid=jump]').offsetParent !== null`
		following = `document.querySelector('[data-opt=follow]').checked`
		lineCount = `document.querySelectorAll('.log-view .l').length && parseInt(document.querySelector('.log-view .l:last-child .n').textContent, 10)`
		moreThan  = `(%s) > %d`
	)
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(fmt.Sprintf(moreThan, lineCount, 200)),
		until(atEnd+` && `+following+` && !(`+jumpShown+`)`),
	)
	// The reader scrolls up: following stops, the view stays put as lines
	// keep coming, and the button appears.
	var last int
	must(t, ctx,
		chromedp.Evaluate(`(() => { const v = document.querySelector('.log-view'); v.dispatchEvent(new WheelEvent('wheel', {deltaY: -100})); v.scrollTop = 0; })()`, nil),
		until(`!`+following+` && `+jumpShown),
		chromedp.Evaluate(`window.shiplogLog.first + window.shiplogLog.lines.length - 1`, &last),
		until(fmt.Sprintf(`window.shiplogLog.first + window.shiplogLog.lines.length - 1 > %d`, last+50)),
	)
	var top float64
	must(t, ctx, chromedp.Evaluate(`document.querySelector('.log-view').scrollTop`, &top))
	if top > 100 {
		t.Errorf("the view moved to %v px while not following", top)
	}
	// Jump to latest: following again, at the end, as lines keep coming.
	must(t, ctx,
		chromedp.Click(`[data-testid=jump]`),
		until(following+` && !(`+jumpShown+`)`),
		chromedp.Evaluate(`window.shiplogLog.first + window.shiplogLog.lines.length - 1`, &last),
		until(fmt.Sprintf(`window.shiplogLog.first + window.shiplogLog.lines.length - 1 > %d`, last+50)),
		until(atEnd),
	)
	// Lines arriving live get their times too.
	must(t, ctx,
		chromedp.Click(`[data-testid=times]`),
		chromedp.Evaluate(`window.shiplogLog.first + window.shiplogLog.lines.length - 1`, &last),
		until(fmt.Sprintf(`window.shiplogLog.first + window.shiplogLog.lines.length - 1 > %d`, last+50)),
	)
	s.release(run.ID)
	must(t, ctx,
		until(logHas("released")),
		until(`[...document.querySelectorAll('.log-view .l')].every(r => r.querySelector('.ts time'))`),
	)
}

// The times toggle shows when each line arrived, as the server stamped it,
// and the choice is kept for the next page.
func TestBrowserLineTimes(t *testing.T) {
	s := startServer(t, browserConfig)
	ctx := browser(t)
	run := s.trigger("deploy", map[string]string{"ENV": "prod"})
	s.waitRun(run.ID, isWaiting)
	s.release(run.ID)
	s.waitRun(run.ID, isFinished)
	_, _, raw := s.do("GET", fmt.Sprintf("/api/runs/%d/log?timestamps=1", run.ID), "")
	// The clock part of each stamp: the page shows local time, UTC here.
	var want []string
	for _, l := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		want = append(want, l[len("2006-01-02T"):len("2006-01-02T15:04:05.000")])
	}
	allStamped := `[...document.querySelectorAll('.log-view .l')].every(r => r.querySelector('.ts time'))`
	// Each row shown, by its line number (command lines are hidden).
	shown := `[...document.querySelectorAll('.log-view .l')].map(r => r.id.slice(1) + ' ' + r.querySelector('.ts').textContent)`
	var got []string
	var href string
	must(t, ctx,
		emulation.SetTimezoneOverride("UTC"),
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(logHas("released")),
		chromedp.Click(`[data-testid=times]`),
		until(allStamped),
		chromedp.Evaluate(shown, &got),
		chromedp.AttributeValue(`[data-testid=download]`, "href", &href, nil),
	)
	var shownWant []string
	for _, row := range got {
		num, _ := strconv.Atoi(strings.Fields(row)[0])
		if num < 1 || num > len(want) {
			t.Fatalf("row %q is not a line of the log", row)
		}
		shownWant = append(shownWant, fmt.Sprintf("%d %s", num, want[num-1]))
	}
	if len(got) < 5 || !slices.Equal(got, shownWant) {
		t.Errorf("times shown %q, the stamped log says %q", got, shownWant)
	}
	if !strings.Contains(href, "timestamps=1") {
		t.Errorf("download link %q leaves the times out", href)
	}
	var title string
	must(t, ctx, chromedp.AttributeValue(`.log-view .l:last-child .ts time`, "title", &title, nil))
	if !strings.Contains(title, " s into the run") {
		t.Errorf("a time's title %q does not say how far into the run", title)
	}
	var visible bool
	must(t, ctx,
		chromedp.Reload(),
		until(logHas("released")),
		until(allStamped),
		chromedp.Evaluate(`getComputedStyle(document.querySelector('.log-view .l .ts')).display !== 'none'`, &visible),
	)
	if !visible {
		t.Error("times hidden after a reload: the choice was not kept")
	}
	must(t, ctx,
		chromedp.Click(`[data-testid=times]`),
		until(`getComputedStyle(document.querySelector('.log-view .l .ts') || document.body).display === 'none' || !document.querySelector('.log-view .l .ts')`),
	)
}

// TestBrowserScreenshots saves the three pages, light and dark, to
// $SHIPLOG_SCREENSHOTS (the README shows them from testdata/screenshots).
func TestBrowserScreenshots(t *testing.T) {
	dir := os.Getenv("SHIPLOG_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, browserConfig)
	ctx := browser(t)
	done := s.trigger("deploy", map[string]string{"ENV": "prod", "VERSION": "v1.4.2"})
	s.waitRun(done.ID, isWaiting)
	s.release(done.ID)
	s.waitRun(done.ID, isFinished)
	s.waitRun(s.trigger("numbers", map[string]string{"N": "40"}).ID, isFinished)
	pulled := s.trigger("pull", nil)
	s.waitRun(pulled.ID, isFinished)
	live := s.trigger("deploy", map[string]string{"ENV": "staging", "VERSION": "v1.5.0"})
	s.waitRun(live.ID, isWaiting)
	pages := []struct{ name, path, ready string }{
		{"dashboard", "/", `document.querySelector('[data-testid=active-run]') !== null`},
		{"job", "/jobs/deploy", `document.querySelector('[data-testid=chart]') !== null`},
		{"run", fmt.Sprintf("/runs/%d", done.ID), logHas("released")},
		// A redrawing job, with its timeline open.
		{"terminal", fmt.Sprintf("/runs/%d", pulled.ID), logHas("deployed: see https://staging.example.com") +
			` && (document.getElementById('timeline').open = true)`},
	}
	for _, scheme := range []string{"light", "dark"} {
		if scheme == "dark" {
			// The dark run page shows line times too.
			must(t, ctx, chromedp.Evaluate(`localStorage.setItem('shiplog.times', '1')`, nil))
			pages[2].ready += ` && document.querySelector('.log-view .l .ts time') !== null`
			pages[3].ready += ` && document.querySelector('.log-view .l .ts time') !== null`
		}
		for _, p := range pages {
			var png []byte
			must(t, ctx,
				colorScheme(scheme),
				chromedp.Navigate(s.URL+p.path),
				until(p.ready),
				chromedp.CaptureScreenshot(&png),
			)
			if err := os.WriteFile(filepath.Join(dir, p.name+"-"+scheme+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// And on a phone, light.
	must(t, ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		colorScheme("light"))
	for _, p := range pages {
		var png []byte
		must(t, ctx, chromedp.Navigate(s.URL+p.path), until(p.ready), chromedp.CaptureScreenshot(&png))
		if err := os.WriteFile(filepath.Join(dir, p.name+"-phone.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.release(live.ID)
	s.waitRun(live.ID, isFinished)
}

// A 1 GB log, made by a real run: it opens at its tail, a line near its
// start opens directly, and a search across all of it answers. The times are
// logged (the benchmark holds the targets).
func TestBrowserGigabyteLog(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a 1 GB log: not under -short or -race")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, fmt.Sprintf(`
jobs:
  huge:
    run: SHIPLOG_BENCH_PRINT="0,12700000" %q
`, self))
	ctx := browser(t)
	run := s.trigger("huge", nil)
	// Writing a gigabyte can take longer than waitRun's usual deadline.
	if r := s.waitRunWithin(run.ID, isFinished, 5*time.Minute); r.State != "succeeded" {
		t.Fatalf("generating the log: %s %s", r.State, r.Error)
	}
	st, err := os.Stat(filepath.Join(s.Data, "logs", fmt.Sprintf("%d.log", run.ID)))
	if err != nil || st.Size() < 1<<30 {
		t.Fatalf("log is %v bytes (%v), want 1 GiB", st.Size(), err)
	}
	page := fmt.Sprintf("%s/runs/%d", s.URL, run.ID)
	lineText := func(n int) string {
		return fmt.Sprintf(`[...document.querySelectorAll('.log-view .l .t')].some(e => e.textContent.includes(' line %d of 12700000:'))`, n)
	}
	start := time.Now()
	must(t, ctx, chromedp.Navigate(page), until(lineText(12700000)))
	t.Logf("1 GB log (%d MB): at its tail in %v", st.Size()>>20, time.Since(start).Round(time.Millisecond))
	// Eight-digit line numbers fit their gutter.
	var overflowing []string
	must(t, ctx, chromedp.Evaluate(`[...document.querySelectorAll('.log-view .l .n')].filter(n => n.scrollWidth > n.clientWidth).map(n => n.textContent)`, &overflowing))
	if len(overflowing) > 0 {
		t.Errorf("line numbers wider than their gutter: %q", overflowing[:min(5, len(overflowing))])
	}

	start = time.Now()
	must(t, ctx, chromedp.Navigate(page+"#L100"), chromedp.Reload(), until(`document.querySelector('#L100.target') !== null`), until(lineText(100)))
	t.Logf("1 GB log: #L100 open in %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	must(t, ctx,
		chromedp.SendKeys(`[data-testid=search]`, "line 123 of 12700000"),
		until(`document.querySelector('[data-testid=search-count]').textContent === '1 of 1 in the whole log'`),
		until(lineText(123)),
	)
	t.Logf("1 GB log: search across all of it answered in %v", time.Since(start).Round(time.Millisecond))
}

// offScreen lists visible elements that stick out of the viewport sideways
// (lines inside the log scroll within it, and the skip link hides off
// screen until focused).
const offScreen = `[...document.querySelectorAll('body *')].filter(e => {
	if (e.closest('.log-view, .skip, .log-static')) return false;
	const r = e.getBoundingClientRect();
	return r.width > 0 && r.height > 0 && (r.right > innerWidth + 0.5 || r.left < -0.5);
}).slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().left) + '..' + Math.round(e.getBoundingClientRect().right))`

// Following means the newest line is on screen: the log fills exactly the
// space the page leaves it, at desktop and phone sizes, without the page
// itself scrolling; and at phone width nothing on any page is off screen.
func TestBrowserNewestLineVisibleAndNothingOffScreen(t *testing.T) {
	s := startServer(t, browserConfig)
	ctx := browser(t)
	done := s.trigger("numbers", map[string]string{"N": "30"})
	s.waitRun(done.ID, isFinished)
	const newest = `(() => {
		const rows = document.querySelectorAll('.log-view .l');
		const last = rows[rows.length - 1].getBoundingClientRect();
		const v = document.querySelector('.log-view');
		return {top: last.top, bottom: last.bottom, inner: innerHeight, page: document.documentElement.scrollHeight,
			following: document.querySelector('[data-opt=follow]').checked, gap: v.scrollHeight - v.scrollTop - v.clientHeight};
	})()`
	sizes := [][2]int64{{1400, 757}, {390, 844}}
	var growing []api.Run
	for range sizes {
		run := s.trigger("growing", nil)
		growing = append(growing, run)
		defer func() { s.release(run.ID); s.waitRun(run.ID, isFinished) }()
	}
	for i, size := range sizes {
		run := growing[i]
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			check := func(when string) {
				t.Helper()
				// Settled: the newest line inside the window (a frame after
				// a change), or the deadline.
				wait, cancel := context.WithTimeout(ctx, 3*time.Second)
				_ = chromedp.Run(wait, until(`(() => { const b = `+newest+`; return b.top >= 0 && b.bottom <= b.inner; })()`))
				cancel()
				var box struct {
					Top, Bottom, Inner, Page, Gap float64
					Following                     bool
				}
				var off []string
				must(t, ctx, chromedp.Evaluate(newest, &box), chromedp.Evaluate(offScreen, &off))
				if box.Top < 0 || box.Bottom > box.Inner {
					t.Errorf("%s: the newest line is at %v..%v px, the window is %v px high (following %v, %v px below the view)", when, box.Top, box.Bottom, box.Inner, box.Following, box.Gap)
				}
				if box.Page > box.Inner+1 {
					t.Errorf("%s: the page scrolls: %v px in a %v px window", when, box.Page, box.Inner)
				}
				if len(off) > 0 {
					t.Errorf("%s: off screen on the run page: %q", when, off)
				}
			}
			must(t, ctx,
				chromedp.EmulateViewport(size[0], size[1]),
				chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
				until(`document.querySelectorAll('.log-view .l').length && window.shiplogLog.lines.length > 300 && document.querySelector('[data-opt=follow]').checked`),
			)
			check("while lines come")
			// Then the header grows (a progress bar, an annotation) while
			// the log is quiet: the log shrinks and still shows its end.
			if err := os.WriteFile(filepath.Join(s.Gate, fmt.Sprintf("grow-%d", run.ID)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			must(t, ctx,
				until(`[...document.querySelectorAll('.log-view .l .t')].some(e => e.textContent.includes('the header grows'))`),
				until(`document.querySelector('#run-head progress') && document.querySelector('[data-testid=annotations]')`),
			)
			check("after the header grew")
		})
	}
	must(t, ctx, chromedp.EmulateViewport(390, 844))
	for _, page := range []string{"/", "/runs", "/jobs/deploy", fmt.Sprintf("/runs/%d", done.ID)} {
		var off []string
		must(t, ctx,
			chromedp.Navigate(s.URL+page),
			chromedp.WaitReady(`main`),
			chromedp.Evaluate(offScreen, &off),
		)
		if len(off) > 0 {
			t.Errorf("off screen on %s at 390x844: %q", page, off)
		}
	}
}

// The small things a new user saw: the job page's breadcrumbs end with its
// name, a required choice preselects nothing, hidden Unicode shows itself,
// a one-line log says "1 line", a quick run's duration has tenths, and a
// running run's page reloads without JavaScript.
func TestBrowserChoiceHiddenUnicodeAndCounts(t *testing.T) {
	s := startServer(t, browserConfig)
	ctx := browser(t)

	// Submitting without choosing gets the field's error, and no run.
	var choice, crumbs string
	must(t, ctx,
		chromedp.Navigate(s.URL+"/jobs/deploy"),
		chromedp.WaitVisible(`[data-testid=run-form]`),
		chromedp.Evaluate(`(() => { const e = document.querySelector('#p-ENV'); return e.value + '|' + e.selectedOptions[0].textContent; })()`, &choice),
		chromedp.Text(`.crumbs`, &crumbs),
	)
	if choice != "|choose…" {
		t.Errorf("ENV starts as %q, want nothing chosen (\"|choose…\")", choice)
	}
	if crumbs != "Dashboard / deploy" {
		t.Errorf("breadcrumbs %q, want the job's name last", crumbs)
	}
	must(t, ctx,
		chromedp.Click(`[data-testid=submit]`),
		chromedp.WaitVisible(`[data-testid=error-ENV]`),
	)
	if runs := countRuns(t, s); runs != 0 {
		t.Errorf("%d runs started with no ENV chosen", runs)
	}

	run := s.trigger("hidden", nil)
	s.waitRun(run.ID, isFinished)
	var got struct {
		Line, Marked, Foot, Duration string
	}
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(logHas("evil<U+202E>exe.live")),
		chromedp.Evaluate(`({
			line: document.querySelector('.log-view .l .t').textContent,
			marked: document.querySelector('.log-view .l .t .uc')?.textContent ?? '',
			foot: document.querySelector('[data-testid=log-size]').textContent,
			duration: document.querySelector('[data-testid=duration]').textContent.trim(),
		})`, &got),
	)
	if got.Marked != "<U+202E>" {
		t.Errorf("the override is shown as %q, want a marked <U+202E>", got.Marked)
	}
	if got.Foot != "1 line" {
		t.Errorf("log size %q, want \"1 line\"", got.Foot)
	}
	if !regexp.MustCompile(`^[0-9]\.[0-9]s$`).MatchString(got.Duration) {
		t.Errorf("a quick run's duration reads %q, want tenths", got.Duration)
	}

	// Without JavaScript, a running run's page reloads itself; a finished
	// one's does not.
	const refresh = `<noscript><meta http-equiv="refresh" content="5"></noscript>`
	if _, _, page := s.do("GET", fmt.Sprintf("/runs/%d", run.ID), ""); strings.Contains(string(page), refresh) {
		t.Error("a finished run's page reloads itself")
	}
	live := s.trigger("ticker", nil)
	s.waitRun(live.ID, func(r *api.Run) bool { return r.State == "running" })
	if _, _, page := s.do("GET", fmt.Sprintf("/runs/%d", live.ID), ""); !strings.Contains(string(page), refresh) {
		t.Errorf("a running run's page does not reload without JavaScript")
	}
	s.release(live.ID)
	s.waitRun(live.ID, isFinished)
}

// The cancel question stays open while the header refreshes under it (a
// progress bar and an annotation arrive), and answering it cancels.
func TestBrowserCancelQuestionSurvivesRefresh(t *testing.T) {
	s := startServer(t, browserConfig)
	ctx := browser(t)
	run := s.trigger("growing", nil)
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(logHas("tick 3")),
		chromedp.Click(`[data-testid=cancel]`),
		chromedp.WaitVisible(`[data-testid=cancel-confirm]`),
	)
	if err := os.WriteFile(filepath.Join(s.Gate, fmt.Sprintf("grow-%d", run.ID)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, ctx,
		until(`document.querySelector('#run-head progress') && document.querySelector('[data-testid=annotations]')`),
		until(`document.querySelector('[data-testid=cancel-confirm]').checkVisibility()`),
		chromedp.Evaluate(`document.querySelector('[data-testid=cancel-confirm]').click(); true`, nil),
	)
	afterNavigation(t, ctx, `document.querySelector('#run-head [data-testid=state]')?.textContent === 'canceled'`)
}

// The runs page filters by job and state at once when a list changes (and
// by who triggered), says when nothing matches, and its pages keep the
// filters.
func TestBrowserRunsFilters(t *testing.T) {
	s := startServer(t, browserConfig)
	ctx := browser(t)
	var hidden []int64
	for range 22 {
		hidden = append(hidden, s.trigger("hidden", nil).ID)
	}
	numbers := s.trigger("numbers", nil)
	for _, id := range append(hidden, numbers.ID) {
		s.waitRun(id, isFinished)
	}
	rows := `[...document.querySelectorAll('[data-testid=runs] tbody tr')].map(r => r.cells[1].textContent.trim())`
	var jobsShown []string
	var older string
	must(t, ctx,
		chromedp.Navigate(s.URL+"/runs"),
		chromedp.WaitVisible(`[data-testid=filter-job]`),
		// As a user's choice: the value, then one change event (chromedp's
		// SetValue sends its own, which would submit as well).
		chromedp.Evaluate(`(() => {
			const el = document.querySelector('[data-testid=filter-job]');
			el.value = 'hidden';
			el.dispatchEvent(new Event('change', {bubbles: true}));
			return true;
		})()`, nil),
	)
	afterNavigation(t, ctx, `location.search.includes('job=hidden')`)
	must(t, ctx,
		chromedp.Evaluate(rows, &jobsShown),
		chromedp.AttributeValue(`[data-testid=older]`, "href", &older, nil),
	)
	if len(jobsShown) != 20 || slices.ContainsFunc(jobsShown, func(j string) bool { return j != "hidden" }) {
		t.Errorf("job=hidden shows %q", jobsShown)
	}
	if !strings.Contains(older, "job=hidden") || !strings.Contains(older, fmt.Sprintf("before=%d", hidden[2])) {
		t.Errorf("the older page is %q: it must keep the filter", older)
	}
	must(t, ctx,
		chromedp.Navigate(s.URL+older),
		chromedp.Evaluate(rows, &jobsShown),
	)
	if len(jobsShown) != 2 || jobsShown[0] != "hidden" {
		t.Errorf("the older page of job=hidden shows %q", jobsShown)
	}
	var empty string
	must(t, ctx,
		chromedp.Navigate(s.URL+"/runs?job=hidden&state=failed"),
		chromedp.Text(`.panel .empty`, &empty),
	)
	if empty != "No runs match these filters." {
		t.Errorf("no match says %q", empty)
	}
	must(t, ctx,
		chromedp.Navigate(s.URL+"/runs?by=anonymous%40127.0.0.1&job=numbers"),
		chromedp.Evaluate(rows, &jobsShown),
	)
	if !slices.Equal(jobsShown, []string{"numbers"}) {
		t.Errorf("by and job: %q", jobsShown)
	}
	// On a phone a run's number, job and state share a line.
	var tops []float64
	must(t, ctx,
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(s.URL+"/runs"),
		chromedp.Evaluate(`[...document.querySelector('[data-testid=runs] tbody tr').cells].slice(0, 3).map(c => Math.round(c.getBoundingClientRect().top + c.getBoundingClientRect().height / 2))`, &tops),
	)
	if len(tops) != 3 || math.Abs(tops[0]-tops[1]) > 2 || math.Abs(tops[1]-tops[2]) > 2 {
		t.Errorf("at 390 px the first row's number, job and state are centred at %v px", tops)
	}
}

// With more than ten jobs the dashboard offers a filter; its 2 s refresh
// keeps the filter, the keyboard focus and a text selection.
func TestBrowserDashboardFilterKeepsFocusAndSelection(t *testing.T) {
	cfg := "jobs:\n  ticker:\n    env: {GATE: $$GATE}\n    run: while [ ! -e \"$GATE/release-$SHIPLOG_RUN_ID\" ]; do sleep 0.01; done\n"
	for i := 1; i <= 11; i++ {
		cfg += fmt.Sprintf("  app-%d:\n    description: service number %d\n    run: \"true\"\n", i, i)
	}
	s := startServer(t, cfg)
	ctx := browser(t)
	visible := `[...document.querySelectorAll('tr[data-find]')].filter(r => !r.hidden).map(r => r.dataset.testid)`
	var shown []string
	must(t, ctx,
		chromedp.Navigate(s.URL+"/"),
		chromedp.SendKeys(`[data-testid=job-filter]`, "app-1"),
		chromedp.Evaluate(visible, &shown),
	)
	if !slices.Equal(shown, []string{"job-app-1", "job-app-10", "job-app-11"}) {
		t.Errorf("filtered to %q", shown)
	}
	// A run starts: the list refreshes under the focus and the filter.
	must(t, ctx, chromedp.Evaluate(`document.querySelector("[data-testid=run-app-10]").focus(); true`, nil))
	run := s.trigger("ticker", nil)
	var focused, filter string
	must(t, ctx,
		until(`document.querySelector('[data-testid=active-run]') !== null`),
		chromedp.Evaluate(`document.activeElement.id`, &focused),
		chromedp.Evaluate(visible, &shown),
		chromedp.Value(`[data-testid=job-filter]`, &filter),
	)
	if focused != "run-app-10" {
		t.Errorf("after a refresh the focus is on %q", focused)
	}
	if filter != "app-1" || len(shown) != 3 {
		t.Errorf("after a refresh the filter is %q and shows %q", filter, shown)
	}
	// Text selected in the list holds the refresh back until it is let go.
	must(t, ctx, chromedp.Evaluate(`(() => {
		const r = document.createRange();
		r.selectNodeContents(document.querySelector('[data-testid=job-app-1] .job-desc'));
		getSelection().removeAllRanges(); getSelection().addRange(r); return true;
	})()`, nil))
	s.release(run.ID)
	s.waitRun(run.ID, isFinished)
	var selected string
	must(t, ctx,
		until(`+document.body.dataset.heldSwaps > 0`),
		chromedp.Evaluate(`getSelection().toString()`, &selected),
	)
	if selected != "service number 1" {
		t.Errorf("the selection became %q", selected)
	}
	must(t, ctx,
		chromedp.Evaluate(`getSelection().removeAllRanges(); true`, nil),
		until(`document.querySelector('[data-testid=active-run]') === null`),
	)
	// Without JavaScript the filter is a query.
	_, _, page := s.do("GET", "/?q=APP-1", "")
	if n := strings.Count(string(page), `data-find="app-`); n != 3 {
		t.Errorf("/?q=APP-1 lists %d jobs, want 3", n)
	}
}

// Workflow command lines are hidden as GitHub hides them (a toggle shows
// them as printed); ##[group] makes a group; an annotation line shows its
// level, title and message; lines after ::stop-commands:: are plain text;
// past three annotations the rest wait behind "N more".
func TestBrowserWorkflowCommands(t *testing.T) {
	s := startServer(t, browserConfig)
	ctx := browser(t)
	run := s.trigger("commands", nil)
	s.waitRun(run.ID, isFinished)
	const rows = `[...document.querySelectorAll('.log-view .l')].map(e => e.id + ' ' + e.className + ' ' + e.querySelector('.t').textContent)`
	var got, raw []string
	var ann struct{ Shown, More, Place string }
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(logHas("after")),
		chromedp.Evaluate(rows, &got),
		chromedp.Evaluate(`({
			shown: String(document.querySelectorAll('[data-testid=annotations] > li').length),
			more: document.querySelector('[data-testid=annotations-more] summary')?.textContent ?? '',
			place: document.querySelector('[data-testid=annotations] .place')?.textContent ?? '',
		})`, &ann),
	)
	want := []string{
		"L1 l before", "L2 l grp Build", "L3 l compiling", "L5 l grp Test", "L6 l testing",
		"L9 l ann-error errorBuild: failed: it broke", "L10 l ann-warning warningw2",
		"L11 l ann-notice noticen3", "L12 l ann-notice noticen4", "L13 l ann-notice noticen5",
		"L15 l ::error::printed, not an annotation", "L17 l after",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ann.Shown != "3" || ann.More != "2 more" || ann.Place != "app.go:12:5" {
		t.Errorf("annotations: %+v, want 3 shown, \"2 more\", the first at app.go:12:5", ann)
	}
	// A group's header is a button that says how many lines it holds:
	// Enter closes it, and it stays closed across a reload.
	var meta string
	must(t, ctx,
		chromedp.Text(`#L2 .gmeta`, &meta),
		chromedp.Focus(`#L2 .gt`),
		chromedp.KeyEvent("\r"),
		until(`document.querySelector('#L2').classList.contains('closed') && !document.querySelector('#L3')`),
		until(`document.activeElement === document.querySelector('#L2 .gt')`),
		chromedp.Reload(),
		until(logHas("after")),
		until(`document.querySelector('#L2').classList.contains('closed') && !document.querySelector('#L3')`),
		chromedp.Focus(`#L2 .gt`),
		chromedp.KeyEvent("\r"),
		until(logHas("compiling")),
	)
	if !regexp.MustCompile(`^1 line( · \d+\.\ds)?$`).MatchString(meta) {
		t.Errorf("group header says %q, want \"1 line\" and how long it took", meta)
	}
	must(t, ctx,
		chromedp.Click(`[data-testid=commands]`),
		until(logHas("::progress::50 halfway")),
		chromedp.Evaluate(rows, &raw),
	)
	if len(raw) != 17 || !strings.HasSuffix(raw[8], "::error file=app.go,line=12,col=5,title=Build%3A failed::it broke") {
		t.Errorf("with commands shown: %d rows, row 9 %q; want all 17 as printed", len(raw), raw[min(8, len(raw)-1)])
	}
}

// Every text on every page, light and dark, reads at WCAG AA contrast
// (testdata/contrast.js): muted text, badges, the log's line numbers and
// bar, ANSI colours including black and faint on the log's background.
func TestBrowserContrast(t *testing.T) {
	s := startServer(t, browserConfig)
	ctx := browser(t)
	audit, err := os.ReadFile("testdata/contrast.js")
	if err != nil {
		t.Fatal(err)
	}
	run := s.trigger("colours", nil)
	s.waitRun(run.ID, isFinished)
	failed := s.trigger("commands", nil)
	s.waitRun(failed.ID, isFinished)
	pages := []struct{ path, ready string }{
		{"/", `document.querySelector('[data-testid=run-deploy]') !== null`},
		{"/jobs/deploy", `document.querySelector('[data-testid=run-form]') !== null`},
		{fmt.Sprintf("/runs/%d", run.ID), logHas("[shiplog: a marker]")},
		{fmt.Sprintf("/runs/%d", failed.ID), logHas("after")},
		{"/runs", `document.querySelector('table.list') !== null`},
	}
	for _, scheme := range []string{"light", "dark"} {
		for _, p := range pages {
			var low []string
			must(t, ctx,
				colorScheme(scheme),
				chromedp.Navigate(s.URL+p.path),
				until(p.ready),
				chromedp.Evaluate(string(audit), &low),
			)
			for _, l := range low {
				t.Errorf("%s %s: contrast %s", scheme, p.path, l)
			}
		}
	}
}

// A server killed and started again under an open run page: the page says
// the connection is lost and being retried, and once the server is back
// it shows the truth (the run was interrupted: no Cancel, the duration
// stops) without a reload.
func TestBrowserPageAfterServerRestart(t *testing.T) {
	dir, cfgPath, gate := writeConfig(t, browserConfig)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"--addr", addr, "--config", cfgPath, "--data", filepath.Join(dir, "data")}
	first := startChild(t, args...)
	s := &testServer{t: t, URL: first.URL, Data: filepath.Join(dir, "data"), Gate: gate}
	run := s.trigger("ticker", nil)
	ctx := browser(t)
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(`window.shiplogLog && window.shiplogLog.lines.length > 3`),
		until(`document.querySelector('[data-testid=cancel]') !== null`),
	)
	first.kill9(t)
	must(t, ctx, until(`document.querySelector('[data-testid=log-size]').textContent.includes('reconnecting')`))
	startChild(t, args...)
	must(t, ctx,
		until(`document.querySelector('#run-head [data-testid=state]')?.textContent === 'interrupted'`),
		until(`document.querySelector('[data-testid=cancel]') === null`),
		until(`!document.querySelector('[data-testid=log-size]').textContent.includes('reconnecting')`),
		// The duration is no longer a live one.
		until(`document.querySelector('[data-testid=duration] [data-since]') === null`),
	)
}
