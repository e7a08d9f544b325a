package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/shiplog/shiplog/api"
)

const waitJobs = `
max_concurrent_runs: 2
jobs:
  deploy:
    lock: deploy-production
    env: {GATE: $$GATE}
    run: |` + gateScript + `
  other:
    env: {GATE: $$GATE}
    run: |` + gateScript

// A queued run says what it waits for, in the API, the CLI, the run page
// (live) and the dashboard: its place in line, and the lock another run
// holds, by whom and since when, or a free slot.
func TestQueuedRunsSayWhatTheyWaitFor(t *testing.T) {
	s := startServer(t, waitJobs)
	holder := s.trigger("deploy", nil)
	s.waitRun(holder.ID, isWaiting)
	blocked := s.trigger("deploy", nil)
	w := s.waitRun(blocked.ID, func(r *api.Run) bool { return r.Wait != nil && r.Wait.HolderSince != nil }).Wait
	if w.Position != 1 || w.Lock != "deploy-production" || w.Holder != holder.ID || w.HolderBy != holder.TriggeredBy {
		t.Fatalf("the run behind the lock waits for %+v", w)
	}
	second := s.trigger("other", nil)
	s.waitRun(second.ID, isWaiting) // the second slot
	slot := s.trigger("other", nil)
	if w := s.waitRun(slot.ID, func(r *api.Run) bool { return r.Wait != nil }).Wait; w.Position != 2 || w.Lock != "" {
		t.Fatalf("the run behind the slots waits for %+v", w)
	}

	code, out, _ := cli(t, s, "status", fmt.Sprint(blocked.ID))
	want := fmt.Sprintf("queued — next in line, waiting for lock deploy-production, held by #%d (%s, running for ", holder.ID, holder.TriggeredBy)
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("shiplog status: %d %q, want it to say %q", code, out, want)
	}
	if _, _, body := s.do("GET", "/", "", "Accept", "text/html"); !strings.Contains(string(body), "2nd in line, waiting for a free slot") {
		t.Fatal("the dashboard does not say what the queued run waits for")
	}
	// The job page shows the line for its lock: who holds it, who waits.
	_, _, page := s.do("GET", "/jobs/deploy", "", "Accept", "text/html")
	_, queue, _ := strings.Cut(string(page), `data-testid="lock-queue"`)
	queue, _, _ = strings.Cut(queue, "</div>")
	for _, want := range []string{"<b>deploy-production</b> is held by", fmt.Sprintf(`href="/runs/%d">#%d</a>`, holder.ID, holder.ID), fmt.Sprintf(`href="/runs/%d"`, blocked.ID)} {
		if !strings.Contains(queue, want) {
			t.Fatalf("the job page's lock queue lacks %q:\n%s", want, queue)
		}
	}
	if strings.Contains(queue, fmt.Sprintf(`href="/runs/%d"`, slot.ID)) {
		t.Fatal("a run waiting for a slot is listed in the lock's queue")
	}

	// The run page says it, and says the new truth when the line moves.
	ctx := browser(t)
	must(t, ctx,
		chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, slot.ID)),
		until(`document.querySelector('[data-testid=run-wait]')?.textContent === 'Queued: 2nd in line, waiting for a free slot'`),
	)
	s.release(holder.ID)
	// The lock goes to the run that waited for it, which takes the freed
	// slot; the other moves up.
	s.waitRun(blocked.ID, isWaiting)
	must(t, ctx,
		until(`document.querySelector('[data-testid=run-wait]')?.textContent === 'Queued: next in line, waiting for a free slot'`),
	)
	s.release(second.ID)
	s.waitRun(slot.ID, isWaiting)
	must(t, ctx, until(`!document.querySelector('[data-testid=run-wait]')`))
	if r := s.waitRun(slot.ID, isWaiting); r.Wait != nil {
		t.Fatalf("a running run still says it waits: %+v", r.Wait)
	}
	if code, _, body := s.do("GET", fmt.Sprintf("/api/runs/%d", slot.ID), ""); code != http.StatusOK || strings.Contains(string(body), `"wait"`) {
		t.Fatalf("a running run's JSON: %d %s", code, body)
	}
	s.release(blocked.ID)
	s.release(slot.ID)
}

// Someone watching a queued run that is canceled before it starts sees
// its stream end, and the (empty) log is whole.
func TestViewerOfACanceledQueuedRunSeesItsEnd(t *testing.T) {
	s := startServer(t, "max_concurrent_runs: 1\njobs:\n  deploy:\n    env: {GATE: $$GATE}\n    run: |"+gateScript)
	holder := s.trigger("deploy", nil)
	s.waitRun(holder.ID, isWaiting)
	queued := s.trigger("deploy", nil)
	viewed := make(chan sseResult, 1)
	go func() { viewed <- s.inBackground().events(fmt.Sprintf("/api/runs/%d/events", queued.ID), 0) }()
	s.waitMetric("shiplog_active_streams 1")
	if code, _, body := s.do("POST", fmt.Sprintf("/api/runs/%d/cancel", queued.ID), ""); code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("cancel: %d %s", code, body)
	}
	select {
	case res := <-viewed:
		if !res.ended || len(res.lines) != 0 {
			t.Fatalf("the viewer of the canceled queued run: ended %v, %d lines", res.ended, len(res.lines))
		}
	case <-time.After(deadline):
		t.Fatal("the viewer of the canceled queued run never saw its end")
	}
	if code, _, body := s.do("GET", fmt.Sprintf("/api/runs/%d/log", queued.ID), ""); code != http.StatusOK || len(body) != 0 {
		t.Fatalf("log of the canceled queued run: %d %q", code, body)
	}
	s.release(holder.ID)
}
