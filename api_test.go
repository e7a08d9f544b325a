package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/api"
)

const apiConfig = `
max_concurrent_runs: 8
jobs:
  gate:
    env: {GATE: $$GATE}
    run: |` + gateScript + `
  quick:
    run: echo quick
  deploy:
    params:
      - {name: ENV, required: true, choices: [staging, prod]}
      - {name: VERSION, default: v1.0.0, pattern: 'v[0-9]+\.[0-9]+\.[0-9]+'}
    run: echo "deploying $VERSION to $ENV"
`

func TestRunStatusETagAndLongPoll(t *testing.T) {
	s := startServer(t, apiConfig)
	run := s.trigger("gate", nil)
	path := fmt.Sprintf("/api/runs/%d", run.ID)
	s.waitRun(run.ID, isWaiting)

	code, hdr, body := s.do("GET", path, "")
	etag := hdr.Get("ETag")
	if code != 200 || etag == "" {
		t.Fatalf("GET: %d etag %q", code, etag)
	}
	var got api.Run
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.State != api.Running || got.Links.Events != path+"/events" || got.Progress.Percent != 1 {
		t.Errorf("run: %s", body)
	}

	// Unchanged: 304 with no body.
	code, _, body = s.do("GET", path, "", "If-None-Match", etag)
	if code != http.StatusNotModified || len(body) != 0 {
		t.Errorf("If-None-Match: %d %q", code, body)
	}
	// Long poll times out with 304.
	start := time.Now()
	code, _, _ = s.do("GET", path+"?wait=300ms", "", "If-None-Match", etag)
	if code != http.StatusNotModified || time.Since(start) < 300*time.Millisecond {
		t.Errorf("long poll timeout: %d after %v", code, time.Since(start))
	}
	// Long poll wakes on change: release the job while the poll waits.
	type result struct {
		code int
		body []byte
	}
	done := make(chan result, 1)
	go func() {
		code, _, body := s.inBackground().do("GET", path+"?wait=60s", "", "If-None-Match", etag)
		done <- result{code, body}
	}()
	s.release(run.ID)
	select {
	case r := <-done:
		if r.code != 200 || !strings.Contains(string(r.body), `"state"`) {
			t.Errorf("long poll after change: %d %s", r.code, r.body)
		}
	case <-time.After(deadline):
		t.Fatal("long poll did not wake on change")
	}
	final := s.waitRun(run.ID, isFinished)
	if final.State != api.Succeeded || final.DurationMS == nil || final.Log.Lines != 3 {
		t.Errorf("final: %+v", final)
	}
	// A finished run answers a long poll at once.
	_, hdr, _ = s.do("GET", path, "")
	start = time.Now()
	if code, _, _ := s.do("GET", path+"?wait=30s", "", "If-None-Match", hdr.Get("ETag")); code != 304 || time.Since(start) > 5*time.Second {
		t.Errorf("finished long poll: %d after %v", code, time.Since(start))
	}
}

func TestAPIErrors(t *testing.T) {
	s := startServer(t, apiConfig)
	done := s.trigger("quick", nil)
	s.waitRun(done.ID, isFinished)
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		code                     int
		field                    string
	}{
		{"unknown job", "POST", "/api/jobs/nope/runs", `{}`, nil, 404, ""},
		{"bad json", "POST", "/api/jobs/quick/runs", `{"params":`, nil, 400, ""},
		{"not an object", "POST", "/api/jobs/quick/runs", `[]`, nil, 400, ""},
		{"unknown field", "POST", "/api/jobs/quick/runs", `{"parms": {}}`, nil, 400, "parms"},
		{"param wrong type", "POST", "/api/jobs/deploy/runs", `{"params": {"ENV": ["prod"]}}`, nil, 400, "ENV"},
		{"params wrong type", "POST", "/api/jobs/deploy/runs", `{"params": "ENV=prod"}`, nil, 400, "params"},
		{"missing required", "POST", "/api/jobs/deploy/runs", `{"params": {}}`, nil, 400, "ENV"},
		{"not a choice", "POST", "/api/jobs/deploy/runs", `{"params": {"ENV": "dev"}}`, nil, 400, "ENV"},
		{"pattern", "POST", "/api/jobs/deploy/runs", `{"params": {"ENV": "prod", "VERSION": "v1; rm -rf /"}}`, nil, 400, "VERSION"},
		{"unknown param", "POST", "/api/jobs/deploy/runs", `{"params": {"ENV": "prod", "X": "1"}}`, nil, 400, "X"},
		{"param given twice", "POST", "/api/jobs/deploy/runs", `{"params": {"ENV": "staging", "ENV": "prod"}}`, nil, 400, "ENV"},
		{"oversized body", "POST", "/api/jobs/quick/runs", `{"params": {"A": "` + strings.Repeat("x", 70<<10) + `"}}`, nil, 413, ""},
		{"run id not a number", "GET", "/api/runs/abc", "", nil, 400, "id"},
		{"negative run id", "GET", "/api/runs/-1", "", nil, 400, "id"},
		{"zero run id", "GET", "/api/runs/0", "", nil, 400, "id"},
		{"huge run id", "GET", "/api/runs/99999999999999999999", "", nil, 400, "id"},
		{"unknown run", "GET", "/api/runs/999", "", nil, 404, ""},
		{"cancel finished", "POST", fmt.Sprintf("/api/runs/%d/cancel", done.ID), "", nil, 409, ""},
		{"cancel unknown", "POST", "/api/runs/999/cancel", "", nil, 404, ""},
		{"rerun unknown", "POST", "/api/runs/999/rerun", "", nil, 404, ""},
		{"bad state filter", "GET", "/api/runs?state=exploded", "", nil, 400, "state"},
		{"bad limit", "GET", "/api/runs?limit=0", "", nil, 400, "limit"},
		{"limit too big", "GET", "/api/runs?limit=100000", "", nil, 400, "limit"},
		{"bad before", "GET", "/api/runs?before=x", "", nil, 400, "before"},
		{"list unknown job", "GET", "/api/runs?job=nope", "", nil, 404, ""},
		{"bad wait", "GET", fmt.Sprintf("/api/runs/%d?wait=soon", done.ID), "", nil, 400, "wait"},
		{"last-event-id not a number", "GET", fmt.Sprintf("/api/runs/%d/events", done.ID), "", []string{"Last-Event-ID", "x"}, 400, "Last-Event-ID"},
		{"last-event-id beyond end", "GET", fmt.Sprintf("/api/runs/%d/events", done.ID), "", []string{"Last-Event-ID", "999999"}, 400, "Last-Event-ID"},
		{"last-event-id mid-line", "GET", fmt.Sprintf("/api/runs/%d/events", done.ID), "", []string{"Last-Event-ID", "2"}, 400, "Last-Event-ID"},
		{"after negative", "GET", fmt.Sprintf("/api/runs/%d/log?after=-5", done.ID), "", nil, 400, "after"},
		{"tail not a number", "GET", fmt.Sprintf("/api/runs/%d/events?tail=lots", done.ID), "", nil, 400, "tail"},
		{"traversal in id", "GET", "/api/runs/..%2f..%2fetc%2fpasswd/log", "", nil, 400, "id"},
		{"timestamps not a bool", "GET", fmt.Sprintf("/api/runs/%d/log?timestamps=yes", done.ID), "", nil, 400, "timestamps"},
		{"timestamps with range", "GET", fmt.Sprintf("/api/runs/%d/log?timestamps=1", done.ID), "", []string{"Range", "bytes=0-3"}, 400, "Range"},
		{"times from not a line", "GET", fmt.Sprintf("/api/runs/%d/times?from=0", done.ID), "", nil, 400, "from"},
		{"times to before from", "GET", fmt.Sprintf("/api/runs/%d/times?from=5&to=4", done.ID), "", nil, 400, "to"},
		{"times span too wide", "GET", fmt.Sprintf("/api/runs/%d/times?from=1&to=1000000", done.ID), "", nil, 400, "to"},
		{"times unknown run", "GET", "/api/runs/999/times", "", nil, 404, ""},
		{"traversal in job", "POST", "/api/jobs/..%2f..%2fetc/runs", `{}`, nil, 404, ""},
		{"unknown api path", "GET", "/api/nothing", "", nil, 404, ""},
		{"wrong method", "DELETE", "/api/runs/1", "", nil, 405, ""},
		{"bad state in list", "GET", "/api/runs?state=running,nope", "", nil, 400, "state"},
	}
	before := countRuns(t, s)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, body := s.do(tt.method, tt.path, tt.body, tt.hdr...)
			if code != tt.code {
				t.Fatalf("status %d, want %d: %s", code, tt.code, body)
			}
			if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Errorf("content type %q", hdr.Get("Content-Type"))
			}
			var e struct{ Error, Field string }
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Fatalf("body %q is not a JSON error", body)
			}
			if e.Field != tt.field {
				t.Errorf("field %q, want %q (%s)", e.Field, tt.field, e.Error)
			}
		})
	}
	// A huge header is refused before any handler runs.
	req, _ := http.NewRequest("POST", s.URL+"/api/jobs/quick/runs", strings.NewReader("{}"))
	req.Header.Set("X-Padding", strings.Repeat("x", 200<<10))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("huge header: %d", resp.StatusCode)
		}
	}
	if after := countRuns(t, s); after != before {
		t.Errorf("bad requests created runs: %d → %d", before, after)
	}
}

func countRuns(t *testing.T, s *testServer) int {
	t.Helper()
	_, _, body := s.do("GET", "/api/runs?limit=500", "")
	var page struct{ Runs []api.Run }
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	return len(page.Runs)
}

func TestListRunsPaginatesNewestFirst(t *testing.T) {
	s := startServer(t, apiConfig)
	var ids []int64
	for range 7 {
		r := s.trigger("quick", nil)
		ids = append(ids, r.ID)
	}
	dep := s.trigger("deploy", map[string]string{"ENV": "prod"})
	s.waitRun(dep.ID, isFinished)
	for _, id := range ids {
		s.waitRun(id, isFinished)
	}
	var seen []int64
	next := "/api/runs?job=quick&limit=3"
	pages := 0
	for next != "" {
		code, _, body := s.do("GET", next, "")
		if code != 200 {
			t.Fatalf("%s: %d %s", next, code, body)
		}
		var page struct {
			Runs []api.Run
			Next string
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Runs {
			seen = append(seen, r.ID)
		}
		next = page.Next
		pages++
	}
	if pages != 3 || fmt.Sprint(seen) != fmt.Sprint(reverse(ids)) {
		t.Errorf("%d pages: %v, want %v", pages, seen, reverse(ids))
	}
	_, _, body := s.do("GET", "/api/runs?state=succeeded,failed&limit=1", "")
	if !strings.Contains(string(body), fmt.Sprintf(`"id":%d`, dep.ID)) {
		t.Errorf("state filter: %s", body)
	}
	// The jobs list carries schema and last run.
	_, _, body = s.do("GET", "/api/jobs", "")
	var list []api.Job
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[2].Name != "deploy" || list[2].LastRun == nil || list[2].LastRun.ID != dep.ID ||
		len(list[2].Params) != 2 || list[2].Params[0].Choices[1] != "prod" {
		t.Errorf("jobs: %s", body)
	}
}

func reverse(ids []int64) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[len(ids)-1-i] = id
	}
	return out
}

func TestCancelAndRerun(t *testing.T) {
	s := startServer(t, apiConfig)
	run := s.trigger("gate", nil)
	s.waitRun(run.ID, isWaiting)
	code, _, body := s.do("POST", fmt.Sprintf("/api/runs/%d/cancel", run.ID), "")
	if code != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", code, body)
	}
	if got := s.waitRun(run.ID, isFinished); got.State != api.Canceled {
		t.Errorf("state %s", got.State)
	}
	code, _, body = s.do("POST", fmt.Sprintf("/api/runs/%d/rerun", run.ID), "")
	if code != http.StatusCreated {
		t.Fatalf("rerun: %d %s", code, body)
	}
	var again api.Run
	json.Unmarshal(body, &again)
	if again.ID == run.ID || again.Job != "gate" || again.RerunOf != run.ID {
		t.Errorf("rerun: %s", body)
	}
	s.waitRun(again.ID, isWaiting)
	s.release(again.ID)
	if got := s.waitRun(again.ID, isFinished); got.State != api.Succeeded {
		t.Errorf("rerun state %s", got.State)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	s := startServer(t, apiConfig)
	s.waitRun(s.trigger("quick", nil).ID, isFinished)
	if code, _, _ := s.do("GET", "/healthz", ""); code != 200 {
		t.Errorf("healthz %d", code)
	}
	// Observers (the duration histogram among them) run after the run's
	// finished state is stored: wait for this one, with the deadline.
	body := s.waitMetric("shiplog_run_duration_seconds_count 1")
	for _, want := range []string{`shiplog_runs{state="succeeded"} 1`, "shiplog_queue_length 0", "shiplog_active_streams 0",
		"shiplog_lines_streamed_total", "shiplog_log_shipments ", "shiplog_log_shipped_bytes_total ", `shiplog_run_duration_seconds_bucket{le="+Inf"} 1`, "shiplog_run_duration_seconds_count 1"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

// The dashboard polls every 2 s; an unchanged answer is a 304 with no body,
// and a change is seen at the next poll.
func TestDashboardPollIsCheapWhenUnchanged(t *testing.T) {
	s := startServer(t, apiConfig)
	code, hdr, body := s.do("GET", "/", "", "HX-Request", "true")
	etag := hdr.Get("ETag")
	if code != 200 || etag == "" || strings.Contains(string(body), "<html") || !strings.Contains(string(body), `hx-trigger="every 2s"`) {
		t.Fatalf("partial: %d %q %.200s", code, etag, body)
	}
	if code, _, body := s.do("GET", "/", "", "HX-Request", "true", "If-None-Match", etag); code != 304 || len(body) != 0 {
		t.Errorf("unchanged poll: %d %q", code, body)
	}
	s.waitRun(s.trigger("quick", nil).ID, isFinished)
	if code, hdr, _ := s.do("GET", "/", "", "HX-Request", "true", "If-None-Match", etag); code != 200 || hdr.Get("ETag") == etag {
		t.Errorf("poll after a run: %d", code)
	}
}

func TestPagesRenderWithoutJavaScript(t *testing.T) {
	s := startServer(t, apiConfig)
	run := s.trigger("quick", nil)
	s.waitRun(run.ID, isFinished)
	for path, want := range map[string]string{
		"/":                              "quick",
		"/jobs/deploy":                   `<select id="p-ENV" name="ENV" required`,
		"/runs":                          fmt.Sprintf("#%d", run.ID),
		fmt.Sprintf("/runs/%d", run.ID):  `<span id="L1">quick`,
		fmt.Sprintf("/runs/%d/", run.ID): "",
		"/jobs/nope":                     "unknown job",
		"/runs/abc":                      "invalid run id",
	} {
		code, hdr, body := s.do("GET", path, "", "Accept", "text/html")
		if want == "" {
			continue
		}
		if !strings.Contains(string(body), want) {
			t.Errorf("%s (%d %s): lacks %q", path, code, hdr.Get("Content-Type"), want)
		}
	}
	// Assets are content-addressed and cached for good.
	_, _, page := s.do("GET", "/", "")
	i := strings.Index(string(page), "/static/app.")
	asset := string(page[i : i+strings.IndexByte(string(page[i:]), '"')])
	code, hdr, _ := s.do("GET", asset, "")
	if code != 200 || !strings.Contains(hdr.Get("Cache-Control"), "immutable") {
		t.Errorf("%s: %d %v", asset, code, hdr)
	}
	if code, _, _ := s.do("GET", "/static/app.css", ""); code != 404 {
		t.Errorf("unhashed asset: %d", code)
	}
}

// The run page renders the log's tail for readers without JavaScript: its
// cost is bounded in bytes, however long the lines (the first version
// allocated 104 MB for one view of 4 MiB lines).
func TestRunPageIsBoundedInBytes(t *testing.T) {
	s := startServer(t, `
jobs:
  wide:
    run: |
      s=$(head -c 1048576 /dev/zero | tr '\0' w)
      i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo "$i $s"; done
      echo "short line after"
`)
	run := s.trigger("wide", nil)
	s.waitRun(run.ID, isFinished)
	// The log goes to the engine in the background: measure the view
	// alone, once that is done.
	s.waitMetric("shiplog_log_shipments 0")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	code, _, body := s.do("GET", fmt.Sprintf("/runs/%d", run.ID), "", "Accept", "text/html")
	runtime.ReadMemStats(&after)
	if code != 200 {
		t.Fatalf("%d", code)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("one view of a 40 MB log allocated %d MB", alloc>>20)
	}
	if len(body) > 512<<10 {
		t.Errorf("page is %d KiB", len(body)>>10)
	}
	page := string(body)
	for _, want := range []string{`id="L41">short line after`, "more bytes: raw line", fmt.Sprintf("/api/runs/%d/log?line=40", run.ID), "41 lines"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// Every GET route answers HEAD, with the GET's headers and no body.
func TestHeadWorksOnEveryGetRoute(t *testing.T) {
	s := startServer(t, apiConfig)
	run := s.trigger("quick", nil)
	s.waitRun(run.ID, isFinished)
	for _, path := range []string{"/healthz", "/metrics", "/", "/runs", "/jobs/quick", fmt.Sprintf("/runs/%d", run.ID), "/signin",
		"/api/jobs", "/api/runs", fmt.Sprintf("/api/runs/%d", run.ID), fmt.Sprintf("/api/runs/%d/log", run.ID),
		fmt.Sprintf("/api/runs/%d/events", run.ID), fmt.Sprintf("/api/runs/%d/search?q=x", run.ID), fmt.Sprintf("/api/runs/%d/times", run.ID)} {
		getCode, getHdr, _ := s.do("GET", path, "")
		code, hdr, body := s.do("HEAD", path, "")
		if code != getCode || code != 200 || len(body) != 0 {
			t.Errorf("HEAD %s: %d with %d bytes, GET %d", path, code, len(body), getCode)
		}
		if hdr.Get("Content-Type") != getHdr.Get("Content-Type") {
			t.Errorf("HEAD %s: Content-Type %q, GET %q", path, hdr.Get("Content-Type"), getHdr.Get("Content-Type"))
		}
	}
}

// A finished run whose log file was deleted says so (410), on the page,
// the stream and the raw log, instead of an empty log or a 500.
func TestDeletedLogIsGone(t *testing.T) {
	s := startServer(t, apiConfig)
	run := s.trigger("quick", nil)
	s.waitRun(run.ID, isFinished)
	if err := os.Remove(filepath.Join(s.Data, "logs", fmt.Sprintf("%d.log", run.ID))); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/runs/%d", "/api/runs/%d/log", "/api/runs/%d/log?after=0", "/api/runs/%d/events", "/api/runs/%d/search?q=x"} {
		path = fmt.Sprintf(path, run.ID)
		code, _, body := s.do("GET", path, "", "Accept", "text/html")
		if code != http.StatusGone || !strings.Contains(string(body), "deleted") {
			t.Errorf("%s: %d %.200s", path, code, body)
		}
	}
	if code, _, _ := s.do("GET", fmt.Sprintf("/api/runs/%d", run.ID), ""); code != 200 {
		t.Errorf("the run's record: %d", code)
	}
}

// Parameter values are strings; a number sent as JSON keeps its digits.
func TestParamNumbersKeepTheirDigits(t *testing.T) {
	s := startServer(t, `
jobs:
  echo:
    params: [{name: TARGET}]
    run: printf '%s\n' "$TARGET"
`)
	for _, tt := range []struct{ body, want string }{
		{`{"params":{"TARGET":12345678901234567890}}`, "12345678901234567890"},
		{`{"params":{"TARGET":1.50}}`, "1.50"},
		{`{"params":{"TARGET":true}}`, "true"},
	} {
		code, _, body := s.do("POST", "/api/jobs/echo/runs", tt.body)
		var r api.Run
		if code != 201 || json.Unmarshal(body, &r) != nil {
			t.Fatalf("%s: %d %s", tt.body, code, body)
		}
		if got := r.Params["TARGET"]; got != tt.want {
			t.Errorf("%s: param %q", tt.body, got)
		}
		s.waitRun(r.ID, isFinished)
		if log := string(s.logFile(r.ID)); log != tt.want+"\n" {
			t.Errorf("%s: the job saw %q", tt.body, log)
		}
	}
	for _, body := range []string{`{"params":{"TARGET":null}}`, `{"params":{"TARGET":{"a":1}}}`, `{"params":{"TARGET":[1]}}`} {
		if code, _, resp := s.do("POST", "/api/jobs/echo/runs", body); code != 400 || !strings.Contains(string(resp), "TARGET") {
			t.Errorf("%s: %d %s", body, code, resp)
		}
	}
}

// A full disk at trigger is a 507 that says so; nothing is half made, and
// once there is room again, runs start as before.
func TestFullDiskAtTriggerIs507(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", data).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", data).Run() })
	s := startServer(t, apiConfig, func(c *Config) { c.DataDir = data })
	filler := filepath.Join(data, "filler")
	f, _ := os.Create(filler)
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break // the disk is full
		}
	}
	f.Close()
	code, _, body := s.do("POST", "/api/jobs/quick/runs", "{}")
	if code != http.StatusInsufficientStorage || !strings.Contains(string(body), "no space") {
		t.Errorf("trigger on a full disk: %d %s", code, body)
	}
	os.Remove(filler)
	run := s.trigger("quick", nil)
	if got := s.waitRun(run.ID, isFinished); got.State != "succeeded" {
		t.Errorf("after room was made: %s", got.State)
	}
}

// ?by= lists the runs one caller triggered; the runs page filters the same
// way (see TestBrowserRunsFilters).
func TestListRunsByWhoTriggered(t *testing.T) {
	auth, tok := tokens(t, map[string]string{"ci": "deployer", "ann": "deployer"})
	s := startServer(t, apiConfig+auth)
	as := func(name string) []string { return []string{"Authorization", "Bearer " + tok[name]} }
	want := map[string][]int64{}
	for _, name := range []string{"ci", "ann", "ci", "ann", "ci"} {
		id := s.trigger2(as(name), "quick")
		want[name] = append([]int64{id}, want[name]...) // newest first
	}
	for name, ids := range want {
		code, _, body := s.do("GET", "/api/runs?by="+name, "", as("ci")...)
		var page api.RunList
		if code != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("by=%s: %d %s", name, code, body)
		}
		var got []int64
		for _, r := range page.Runs {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, ids) {
			t.Errorf("by=%s: runs %v, want %v", name, got, ids)
		}
	}
	if code, _, _ := s.do("GET", "/api/runs?by="+strings.Repeat("x", 201), "", as("ci")...); code != 400 {
		t.Errorf("an over-long by: %d, want 400", code)
	}
}
