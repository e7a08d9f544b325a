package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/api"
)

// The outside attack's matrix, kept: every route and method as every kind
// of caller, and a corpus of bad input. Nobody does what their role does
// not allow, and nothing answers 5xx.
func TestAttackRoutesByRoles(t *testing.T) {
	auth, tok := tokens(t, map[string]string{"ro": "viewer", "ci": "deployer,quick", "dep": "deployer", "boss": "admin"})
	s := startServer(t, apiConfig+auth)
	bearer := func(name string) []string { return []string{"Authorization", "Bearer " + tok[name]} }
	done := s.trigger2(bearer("boss"), "quick")
	s.waitRunAs(tok["boss"], done, isFinished)

	roles := []struct {
		name      string
		hdr       []string
		read      bool   // may read
		changeJob string // a job it may run ("*": any)
	}{
		{"nobody", nil, false, ""},
		{"bad token", []string{"Authorization", "Bearer nope"}, false, ""},
		{"malformed auth", []string{"Authorization", "Basic eDp5"}, false, ""},
		{"viewer", bearer("ro"), true, ""},
		{"deployer of quick", bearer("ci"), true, "quick"},
		{"deployer", bearer("dep"), true, "*"},
		{"admin", bearer("boss"), true, "*"},
	}
	id := fmt.Sprint(done)
	paths := []string{"/", "/runs", "/jobs/quick", "/jobs/deploy", "/runs/" + id, "/signin", "/healthz", "/metrics",
		"/api/jobs", "/api/runs", "/api/runs/" + id, "/api/runs/" + id + "/log", "/api/runs/" + id + "/events",
		"/api/runs/" + id + "/search?q=quick", "/api/runs/" + id + "/times",
		"/jobs/quick/runs", "/jobs/deploy/runs", "/runs/" + id + "/cancel", "/runs/" + id + "/rerun", "/signout",
		"/api/jobs/quick/runs", "/api/jobs/deploy/runs", "/api/runs/" + id + "/cancel", "/api/runs/" + id + "/rerun"}
	methods := []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
	public := map[string]bool{"/signin": true, "/healthz": true}
	requests, fivexx := 0, 0
	for _, r := range roles {
		for _, p := range paths {
			for _, m := range methods {
				body := ""
				if m == "POST" && strings.HasPrefix(p, "/api/jobs/") {
					body = `{"params":{"ENV":"staging"}}`
				}
				code, _, resp := s.do(m, p, body, r.hdr...)
				requests++
				if code >= 500 {
					fivexx++
					t.Errorf("%s %s as %s: %d %.200s", m, p, r.name, code, resp)
				}
				ok := code < 400 && code != http.StatusNotModified
				path, _, _ := strings.Cut(p, "?")
				switch {
				case !ok || public[path]:
				case m == "POST" || m == "PUT" || m == "DELETE" || m == "PATCH":
					job := ""
					if strings.Contains(p, "quick") || strings.HasPrefix(p, "/runs/") || strings.HasPrefix(p, "/api/runs/") {
						job = "quick" // the run is of quick
					}
					if strings.Contains(p, "deploy") {
						job = "deploy"
					}
					if p == "/signout" {
						job = ""
					}
					if job != "" && r.changeJob != "*" && r.changeJob != job {
						t.Errorf("%s %s as %s: %d, but it may not run %s", m, p, r.name, code, job)
					}
				case !r.read:
					t.Errorf("%s %s as %s: %d, but it may not read", m, p, r.name, code)
				}
			}
		}
	}
	t.Logf("routes × roles: %d requests (%d paths × %d methods × %d callers), %d answered 5xx", requests, len(paths), len(methods), len(roles), fivexx)
}

// trigger2 starts a run of job as the caller hdr names, returning its ID.
func (s *testServer) trigger2(hdr []string, job string) int64 {
	s.t.Helper()
	code, _, body := s.do("POST", "/api/jobs/"+job+"/runs", "{}", hdr...)
	var r api.Run
	if code != 201 || json.Unmarshal(body, &r) != nil {
		s.fatalf("trigger %s: %d %s", job, code, body)
	}
	return r.ID
}

// Bad input of every kind the attack sent: each gets a 4xx (or is served),
// never a 5xx, and none starts a run.
func TestAttackBadInputsNever5xx(t *testing.T) {
	s := startServer(t, apiConfig)
	run := s.trigger("quick", nil)
	s.waitRun(run.ID, isFinished)
	id := fmt.Sprint(run.ID)
	before := countRuns(t, s)
	type req struct {
		method, path, body string
		hdr                []string
	}
	var reqs []req
	for _, bad := range []string{"0", "-1", "abc", "99999999999999999999999", "1e3", "%00", "..%2f..%2fetc%2fpasswd", "1%0a", strings.Repeat("9", 5000), "1.5", " 1", "0x10", "%C3"} {
		for _, p := range []string{"/runs/%s", "/api/runs/%s", "/api/runs/%s/log", "/api/runs/%s/events", "/api/runs/%s/search?q=x", "/api/runs/%s/times"} {
			reqs = append(reqs, req{"GET", fmt.Sprintf(p, bad), "", nil})
		}
		reqs = append(reqs, req{"POST", "/api/runs/" + bad + "/cancel", "", nil}, req{"POST", "/api/runs/" + bad + "/rerun", "", nil})
	}
	for _, q := range []string{"after=-1", "after=abc", "after=99999999999999999999", "after=3", "tail=-1", "tail=abc", "tail=999999999999",
		"line=0", "line=-3", "line=abc", "line=99999999", "wait=-1s", "wait=abc", "wait=1h", "wait=9999999999999999999", "timestamps=maybe",
		"after=0&timestamps=1&wait=0", "download=1", "after=0&line=2"} {
		for _, p := range []string{"/api/runs/%s/log?", "/api/runs/%s/events?", "/api/runs/%s?"} {
			reqs = append(reqs, req{"GET", fmt.Sprintf(p, id) + q, "", nil})
		}
	}
	for _, q := range []string{"q=", "q=%C3", "q=re:(", "q=re:%C3", "q=re:" + strings.Repeat("(", 200), "q=x&limit=0", "q=x&limit=abc", "q=x&limit=99999999",
		"q=" + strings.Repeat("a", 100000), "q=re:(?:(?:.?){100}){10}Q", "q=re:a{1001}", "q=x&case=2"} {
		reqs = append(reqs, req{"GET", "/api/runs/" + id + "/search?" + q, "", nil})
	}
	for _, q := range []string{"from=0", "from=-1", "to=0", "from=5&to=2", "from=1&to=999999999", "from=abc"} {
		reqs = append(reqs, req{"GET", "/api/runs/" + id + "/times?" + q, "", nil})
	}
	for _, q := range []string{"state=bogus", "state=", "limit=0", "limit=501", "limit=abc", "before=0", "before=-1", "job=nope", "job=../x"} {
		reqs = append(reqs, req{"GET", "/api/runs?" + q, "", nil}, req{"GET", "/runs?" + q, "", nil})
	}
	for _, r := range []string{"bytes=-0", "bytes=abc", "bytes=5-2", "bytes=0-0,1-1,2-2", "bytes=99999999-", "items=0-1", "bytes=" + strings.Repeat("0-1,", 1000)} {
		reqs = append(reqs, req{"GET", "/api/runs/" + id + "/log", "", []string{"Range", r}})
	}
	for _, l := range []string{"abc", "-5", "99999999999999999999", "3", "1.5", ""} {
		reqs = append(reqs, req{"GET", "/api/runs/" + id + "/events", "", []string{"Last-Event-ID", l}})
	}
	for _, b := range []string{`{`, `[]`, `null`, `"x"`, `{"params":null}`, `{"params":[]}`, `{"params":{"ENV":null}}`, `{"params":{"ENV":{"a":1}}}`,
		`{"params":{"ENV":"staging","ENV":"prod"}}`, `{"params":{"ENV":"staging\u0000"}}`, "{\"params\":{\"ENV\":\"\xff\xfe\"}}", `{"x":1}`,
		strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000), `{"params":{"ENV":"` + strings.Repeat("x", 70<<10) + `"}}`,
		`{"params":{"ENV":"staging"}} {"again":1}`, `{"params":{"VERSION":"v1; rm -rf /","ENV":"prod"}}`} {
		reqs = append(reqs, req{"POST", "/api/jobs/deploy/runs", b, nil})
	}
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=\"", "%%%"} {
		reqs = append(reqs, req{"POST", "/api/jobs/quick/runs", "{}", []string{"Content-Type", ct}})
	}
	for _, f := range []string{"ENV=staging%ZZ", strings.Repeat("a=b&", 20000), "ENV=" + strings.Repeat("x", 70<<10), "_confirm=yes&ENV=nope"} {
		reqs = append(reqs, req{"POST", "/jobs/deploy/runs", f, []string{"Content-Type", "application/x-www-form-urlencoded"}})
	}
	for _, h := range [][]string{{"Host", "evil.example"}, {"Host", "127.0.0.1:1"}, {"Origin", "null"}, {"Origin", "http://[::1"}, {"Origin", "javascript:alert(1)"},
		{"Sec-Fetch-Site", "bogus"}, {"X-Forwarded-For", "not an ip"}, {"X-Forwarded-For", strings.Repeat("1.2.3.4,", 1000)}, {"If-None-Match", strings.Repeat(`"x",`, 5000)},
		{"Accept", strings.Repeat("text/html,", 1000)}} {
		reqs = append(reqs, req{"POST", "/api/jobs/nope/runs", "{}", h}, req{"GET", "/", "", h})
	}
	for _, p := range []string{"/jobs/..%2f..%2fetc", "/jobs/" + strings.Repeat("a", 5000), "/static/../../go.mod", "/static/%2e%2e/go.mod", "/api/jobs/%00/runs", "/runs/1/../../etc/passwd", "//", "/%", "/api/runs/1/log/../../x"} {
		reqs = append(reqs, req{"GET", p, "", nil}, req{"POST", p, "{}", nil})
	}
	fivexx, dropped := 0, 0
	for _, r := range reqs {
		code, body, err := try(s, r.method, r.path, r.body, r.hdr...)
		if err != nil {
			// A request over the header limit is answered 431 and the
			// connection closed while the client still sends: a reset.
			dropped++
			continue
		}
		if code >= 500 {
			fivexx++
			t.Errorf("%s %.120s %v: %d %.200s", r.method, r.path, r.hdr, code, body)
		}
	}
	if after := countRuns(t, s); after != before {
		t.Errorf("bad input started %d runs", after-before)
	}
	t.Logf("bad inputs: %d requests, %d answered 5xx, %d connections closed on oversized requests", len(reqs), fivexx, dropped)
}

// try sends a request and reports a transport error instead of failing.
func try(s *testServer, method, path, body string, hdr ...string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	resp, err := s.request(context.Background(), method, path, rd, hdr...)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
