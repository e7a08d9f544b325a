package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// termConfig's jobs wait at steps the test opens ($GATE/STEP-RUNID).
const termConfig = `
jobs:
  redraw:
    env: {GATE: $$GATE}
    run: |
      step() { while [ ! -e "$GATE/$1-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done; }
      printf 'a 0%%\nb 0%%\nc 0%%\n'
      step one
      printf '\033[3A\r\033[2Ka 50%%\n\033[2Kb 50%%\n\033[2Kc 50%%\n'
      step two
      printf '\033[3A\r\033[2Ka done\n\033[2Kb done\n\033[2Kc done\n'
      printf '\033[31mred\nstill red\033[0m plain\n'
      printf 'abc\b\bX and \033_bk;t=1700000000000\007no APC, \033]0;title\007no title\n'
      printf 'see https://example.com/a?b=1. and \033]8;;https://example.com/x\033\\this\033]8;;\033\\\n'
      echo "all pulled"
  prompt:
    env: {GATE: $$GATE}
    run: |
      step() { while [ ! -e "$GATE/$1-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done; }
      echo start
      printf 'Password: '
      step one
      printf 'ok\nbar 10%%\rbar 55%%\r'
      step two
      printf 'bar 100%%\n'
  wide:
    run: |
      awk 'BEGIN { for (i = 1; i <= 3000; i++) { s = "line " i " "; n = (i % 100 == 0) ? 0 : 20 + (i * 37) % 600; while (length(s) < n) s = s "x"; if (i % 100 == 0) for (k = 0; k < 150; k++) s = s "漢"; print s } }'
  flood:
    env: {GATE: $$GATE}
    run: |
      while [ ! -e "$GATE/one-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done
      awk 'BEGIN { for (i = 1; i <= 60000; i++) printf "\033[3%dmrow %d\033[0m\n", i % 8, i }'
  timed:
    env: {GATE: $$GATE}
    run: |
      echo "::group::Build"
      echo "compiling"
      while [ ! -e "$GATE/one-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done
      echo "::endgroup::"
      echo "::group::Deploy"
      echo "::error::it broke"
      echo "::endgroup::"
  batches:
    env: {GATE: $$GATE}
    run: |
      step() { while [ ! -e "$GATE/$1-$SHIPLOG_RUN_ID" ]; do sleep 0.01; done; }
      for i in 1 2 3 4 5; do echo "first batch line $i"; done
      step one
      for i in 1 2 3 4 5; do echo "second batch line $i"; done
      step two
`

// open opens step name of run id's job.
func (s *testServer) open(name string, id int64) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.Gate, fmt.Sprintf("%s-%d", name, id)), nil, 0o644); err != nil {
		s.fatalf("%v", err)
	}
}

// failOnScriptErrors fails the test on any uncaught exception in the page.
func failOnScriptErrors(t *testing.T, ctx context.Context) {
	chromedp.ListenTarget(ctx, func(ev any) {
		if e, ok := ev.(*cdpruntime.EventExceptionThrown); ok {
			t.Errorf("script error: %s", e.ExceptionDetails.Exception.Description)
		}
	})
}

// shownRows is the text of the log's rows, as the page shows them.
const shownRows = `[...document.querySelectorAll('.log-view .l .t')].map(e => e.textContent).join('|')`

func rowsAre(rows ...string) string {
	return fmt.Sprintf(`%s === %q`, shownRows, strings.Join(rows, "|"))
}

// A job that redraws three lines with cursor-up shows three rows while it
// runs and at the end, as a terminal does; colours carry across lines;
// backspace (abc, two back, X and more: "aX and"), APC and OSC strings are applied, not printed; URLs are links.
func TestBrowserTerminalRedrawsInPlace(t *testing.T) {
	s := startServer(t, termConfig)
	ctx := browser(t)
	failOnScriptErrors(t, ctx)
	run := s.trigger("redraw", nil)
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(rowsAre("a 0%", "b 0%", "c 0%")),
	)
	s.open("one", run.ID)
	must(t, ctx, until(rowsAre("a 50%", "b 50%", "c 50%")))
	s.open("two", run.ID)
	final := []string{"a done", "b done", "c done", "red", "still red plain", "aX and no APC, no title", "see https://example.com/a?b=1. and this", "all pulled"}
	must(t, ctx,
		until(rowsAre(final...)),
		until(`document.querySelector('#run-head [data-testid=state]').textContent === 'succeeded'`),
	)
	// Line numbers: the lines that only redrew rows above have none.
	var nums string
	must(t, ctx, chromedp.Evaluate(`[...document.querySelectorAll('.log-view .l .n')].map(e => e.textContent).join(',')`, &nums))
	if nums != "1,2,3,10,11,12,13,14" {
		t.Errorf("line numbers %s", nums)
	}
	var styled struct {
		Red, StillRed, Plain bool
		Links                []string
	}
	must(t, ctx, chromedp.Evaluate(`(() => {
		const t = (n) => document.querySelector('#L' + n + ' .t');
		const red = (e) => e && getComputedStyle(e).color === getComputedStyle(document.querySelector('.f1') || e).color && e.classList.contains('f1');
		return {
			Red: red(t(10).querySelector('span')),
			StillRed: red(t(11).querySelector('span')),
			Plain: !t(11).lastChild.classList,
			Links: [...t(13).querySelectorAll('a')].map(a => a.href),
		};
	})()`, &styled))
	if !styled.Red || !styled.StillRed || !styled.Plain {
		t.Errorf("colour across lines: %+v", styled)
	}
	if strings.Join(styled.Links, " ") != "https://example.com/a?b=1 https://example.com/x" {
		t.Errorf("links %q", styled.Links)
	}
	// Reloaded after the end: the same rows.
	must(t, ctx, chromedp.Reload(), until(rowsAre(final...)))
}

// A prompt and a \r progress bar show before their newline arrives, in
// place after the lines, and give way to the finished line.
func TestBrowserUnfinishedLineShowsLive(t *testing.T) {
	s := startServer(t, termConfig)
	ctx := browser(t)
	failOnScriptErrors(t, ctx)
	run := s.trigger("prompt", nil)
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(rowsAre("start", "Password: ")),
		until(`document.querySelector('[data-testid=partial-line] .n').textContent === '2'`),
	)
	s.open("one", run.ID)
	must(t, ctx, until(rowsAre("start", "Password: ok", "bar 55%")))
	s.open("two", run.ID)
	must(t, ctx,
		until(rowsAre("start", "Password: ok", "bar 100%")),
		until(`!document.querySelector('[data-testid=partial-line]')`),
	)
}

// A selection in the log survives new lines arriving; shift-click on line
// numbers marks a range and names it in the address (#L2-L4).
func TestBrowserSelectionSurvivesNewLines(t *testing.T) {
	s := startServer(t, termConfig)
	ctx := browser(t)
	failOnScriptErrors(t, ctx)
	run := s.trigger("batches", nil)
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(logHas("first batch line 5")),
		chromedp.Evaluate(`(() => {
			const t = document.querySelector('#L3 .t').firstChild;
			const r = document.createRange();
			r.setStart(t, 6); r.setEnd(t, 16);
			getSelection().removeAllRanges(); getSelection().addRange(r);
			return true;
		})()`, nil),
	)
	var sel string
	must(t, ctx, chromedp.Evaluate(`getSelection().toString()`, &sel))
	if sel != "batch line" {
		t.Fatalf("selected %q", sel)
	}
	s.open("one", run.ID)
	must(t, ctx, until(logHas("second batch line 5")), chromedp.Evaluate(`getSelection().toString()`, &sel))
	if sel != "batch line" {
		t.Errorf("after new lines the selection is %q", sel)
	}
	// Shift-click: a range of lines.
	must(t, ctx,
		chromedp.Click(`#L2 .n`),
		chromedp.Evaluate(`document.querySelector('#L4 .n').dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true, shiftKey: true})); true`, nil),
		until(`location.hash === '#L2-L4'`),
		until(`document.querySelector('#L2').matches('.target') && document.querySelector('#L3').matches('.range') && document.querySelector('#L4').matches('.range') && !document.querySelector('#L5').matches('.range, .target')`),
	)
	// A permalink to a range opens with its lines marked.
	s.open("two", run.ID)
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d#L7-L9", s.URL, run.ID)),
		until(`document.querySelector('#L7')?.matches('.target') && document.querySelector('#L9').matches('.range') && !document.querySelector('#L10').matches('.range')`),
	)
}

// With wrap on, rows take the height their text needs (wide characters
// too): the end of a log of long lines is reachable, and a permalink
// lands its line exactly where the page puts it, a third down the view.
func TestBrowserWrapReachesTheEndAndPermalinksLandExactly(t *testing.T) {
	s := startServer(t, termConfig)
	ctx := browser(t)
	failOnScriptErrors(t, ctx)
	run := s.trigger("wide", nil)
	s.waitRun(run.ID, isFinished)
	// inView: line n's row is drawn whole inside the log's viewport; its
	// top, relative to the viewport's, is in window.top.
	inView := func(n int) string {
		return fmt.Sprintf(`(() => {
			const v = document.querySelector('.log-view'), e = document.getElementById('L%d');
			if (!e) return false;
			const a = v.getBoundingClientRect(), b = e.getBoundingClientRect();
			window.top_ = b.top - a.top;
			return b.top >= a.top - 0.5 && b.bottom <= a.top + v.clientHeight + 0.5;
		})()`, n)
	}
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(logHas("line 2999 "+strings.Repeat("x", 20+(2999*37)%600-len("line 2999 ")))),
		chromedp.Click(`[data-opt=wrap]`),
		// Following: the last line is in view once the heights settle.
		until(inView(3000)),
	)
	var rows int
	must(t, ctx, chromedp.Evaluate(`Math.round(document.getElementById('L2999').offsetHeight / 20)`, &rows))
	if rows < 2 {
		t.Fatalf("line 2999 (%d characters) takes %d rows with wrap on", 20+(2999*37)%600, rows)
	}
	for _, n := range []int{1500, 200, 2900} {
		var top, third float64
		must(t, ctx,
			chromedp.Evaluate(fmt.Sprintf(`location.hash = '#L%d'; true`, n), nil),
			until(inView(n)+fmt.Sprintf(` && document.getElementById('L%d').matches('.target')`, n)),
			chromedp.Evaluate(`window.top_`, &top),
			chromedp.Evaluate(`document.querySelector('.log-view').clientHeight / 3`, &third),
		)
		// Where scrollToIndex puts it; within a pixel of rounding.
		if top < third-1.5 || top > third+1.5 {
			t.Errorf("#L%d landed %.1f px down the view, want %.1f", n, top, third)
		}
	}
}

// A live page holds a bounded window of lines: a job printing 60,000 lines
// while the page follows leaves at most 20,000 in the tab, and scrolling
// back fetches the earlier ones again by range, exactly from where the
// window starts.
func TestBrowserLivePageKeepsABoundedWindow(t *testing.T) {
	s := startServer(t, termConfig)
	ctx := browser(t)
	failOnScriptErrors(t, ctx)
	run := s.trigger("flood", nil)
	must(t, ctx, chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)), until(`window.shiplogLog && window.shiplogLog.marks`))
	s.open("one", run.ID)
	var held struct{ Lines, Rows, First int }
	must(t, ctx,
		until(logHas("row 60000")),
		chromedp.Evaluate(`({Lines: shiplogLog.lines.length, Rows: shiplogLog.screen.rows.length, First: shiplogLog.first})`, &held),
	)
	if held.Lines > 20000 || held.Rows > 20000 || held.First <= 40000 || held.First+held.Lines-1 != 60000 {
		t.Fatalf("after 60,000 lines the page holds %+v", held)
	}
	// Back to the top of the window: the lines before it come by range.
	first := held.First
	must(t, ctx,
		chromedp.Evaluate(`document.querySelector('.log-view').scrollTop = 0; true`, nil),
		until(fmt.Sprintf(`shiplogLog.first < %d`, first)),
		until(fmt.Sprintf(`document.getElementById('L%d')?.querySelector('.t').textContent === 'row %d'`, first-1, first-1)),
		until(fmt.Sprintf(`document.getElementById('L%d')?.querySelector('.t').textContent === 'row %d'`, first, first)),
	)
}

// The run page's timeline has a bar per group, live, coloured by how each
// went and linking to its lines; a group's header in the log says how long
// it took.
func TestBrowserTimelineOfGroups(t *testing.T) {
	s := startServer(t, termConfig)
	ctx := browser(t)
	failOnScriptErrors(t, ctx)
	run := s.trigger("timed", nil)
	outcomes := `[...document.querySelectorAll('[data-testid=timeline-group]')].map(e => e.className + ':' + e.querySelector('.tl-title').textContent + ':' + e.querySelector('.tl-dur').textContent.trim()).join(' ')`
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
		until(outcomes+` === 'running:Build:running'`),
	)
	s.open("one", run.ID)
	var got string
	must(t, ctx,
		until(`document.querySelector('#run-head [data-testid=state]').textContent === 'succeeded'`),
		until(`document.querySelectorAll('[data-testid=timeline-group]').length === 2`),
		chromedp.Evaluate(outcomes, &got),
	)
	if !strings.HasPrefix(got, "succeeded:Build:") || !strings.Contains(got, " failed:Deploy:") {
		t.Fatalf("timeline %q", got)
	}
	// The header's groups say how long they took; a title leads to its line.
	must(t, ctx,
		until(`[...document.querySelectorAll('.l.grp .gmeta')].map(e => e.textContent).every(t => / · \d/.test(t))`),
		chromedp.Evaluate(`document.getElementById('timeline').open = true; true`, nil),
		chromedp.Click(`[data-testid=timeline-group]:nth-child(2) .tl-title`),
		until(`location.hash === '#L4' && document.getElementById('L4')?.matches('.target')`),
	)
	// The job page: how each group's duration moved.
	must(t, ctx,
		chromedp.Navigate(s.URL+"/jobs/timed"),
		until(`[...document.querySelectorAll('[data-testid=group-trend] .trend-title')].map(e => e.textContent).join(',') === 'Build,Deploy'`),
		until(`document.querySelector('[data-testid=group-trend] [data-testid=trend-last]').textContent.startsWith('last ')`),
		until(`document.querySelectorAll('[data-testid=group-trend]')[1].querySelector('rect.failed') !== null`),
	)
	var api struct {
		Groups []struct {
			Title      string `json:"title"`
			Line       int64  `json:"line"`
			EndLine    int64  `json:"end_line"`
			DurationMS *int64 `json:"duration_ms"`
			Outcome    string `json:"outcome"`
		} `json:"groups"`
	}
	_, _, body := s.do("GET", fmt.Sprintf("/api/runs/%d", run.ID), "")
	if err := json.Unmarshal(body, &api); err != nil || len(api.Groups) != 2 || api.Groups[1].Outcome != "failed" || api.Groups[0].DurationMS == nil || api.Groups[1].EndLine != 6 {
		t.Fatalf("API groups %s (%v)", body, err)
	}
}
