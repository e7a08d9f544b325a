package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/access"
)

// tokens makes tokens for the test config: name → role[,job].
func tokens(t *testing.T, spec map[string]string) (string, map[string]string) {
	t.Helper()
	secrets := map[string]string{}
	cfg := "auth:\n  tokens:\n"
	for name, s := range spec {
		role, job, _ := strings.Cut(s, ",")
		r, err := access.ParseRole(role)
		if err != nil {
			t.Fatal(err)
		}
		secret, line, err := access.NewToken(name, r)
		if err != nil {
			t.Fatal(err)
		}
		if job != "" {
			line = strings.Replace(line, "role: "+role, "role: "+role+", jobs: ["+job+"]", 1)
		}
		cfg += line + "\n"
		secrets[name] = secret
	}
	return cfg, secrets
}

func TestAccessByRole(t *testing.T) {
	auth, tok := tokens(t, map[string]string{"ro": "viewer", "ci": "deployer,quick", "boss": "admin"})
	s := startServer(t, apiConfig+auth)
	bearer := func(name string) []string { return []string{"Authorization", "Bearer " + tok[name]} }
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		code                     int
	}{
		{"no token, api", "GET", "/api/jobs", "", nil, 401},
		{"bad token", "GET", "/api/jobs", "", []string{"Authorization", "Bearer nope"}, 401},
		{"not bearer", "GET", "/api/jobs", "", []string{"Authorization", "Basic " + tok["boss"]}, 401},
		{"viewer reads", "GET", "/api/jobs", "", bearer("ro"), 200},
		{"viewer may not trigger", "POST", "/api/jobs/quick/runs", "{}", bearer("ro"), 403},
		{"deployer limited to quick", "POST", "/api/jobs/deploy/runs", `{"params":{"ENV":"prod"}}`, bearer("ci"), 403},
		{"deployer runs quick", "POST", "/api/jobs/quick/runs", "{}", bearer("ci"), 201},
		{"admin runs anything", "POST", "/api/jobs/deploy/runs", `{"params":{"ENV":"prod"}}`, bearer("boss"), 201},
		{"viewer may not cancel", "POST", "/api/runs/1/cancel", "", bearer("ro"), 403},
		{"viewer may not rerun", "POST", "/api/runs/1/rerun", "", bearer("ro"), 403},
		{"health is public", "GET", "/healthz", "", nil, 200},
		{"metrics need a token", "GET", "/metrics", "", nil, 401},
		{"events need a token", "GET", "/api/runs/1/events", "", nil, 401},
	}
	for _, tt := range tests {
		code, _, body := s.do(tt.method, tt.path, tt.body, tt.hdr...)
		if code != tt.code {
			t.Errorf("%s: %d, want %d: %s", tt.name, code, tt.code, body)
		}
	}
	_, _, body := s.do("GET", "/api/runs/1", "", bearer("ro")...)
	if !strings.Contains(string(body), `"triggered_by":"ci"`) {
		t.Errorf("triggered_by: %s", body)
	}
	// A page without a session goes to sign-in.
	req, _ := http.NewRequest("GET", s.URL+"/runs/1", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?next=%2Fruns%2F1" {
		t.Errorf("page without session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

var csrfRE = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

func TestSignInSessionAndCSRF(t *testing.T) {
	auth, tok := tokens(t, map[string]string{"alice": "deployer"})
	s := startServer(t, apiConfig+auth)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	post := func(path string, form url.Values) (*http.Response, string) {
		t.Helper()
		resp, err := c.PostForm(s.URL+path, form)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	if resp, body := post("/signin", url.Values{"token": {"wrong"}}); resp.StatusCode != 401 || !strings.Contains(body, "not valid") {
		t.Errorf("wrong token: %d", resp.StatusCode)
	}
	resp, _ := post("/signin", url.Values{"token": {tok["alice"]}, "next": {"/jobs/quick"}})
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/jobs/quick" {
		t.Fatalf("sign in landed on %d %s", resp.StatusCode, resp.Request.URL)
	}
	u, _ := url.Parse(s.URL)
	cookies := jar.Cookies(u)
	if len(cookies) != 1 || cookies[0].Name != sessionCookie {
		t.Fatalf("cookies %v", cookies)
	}
	_, page := get("/jobs/quick")
	m := csrfRE.FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, "alice (deployer)") {
		t.Fatalf("page lacks CSRF token or user:\n%.500s", page)
	}
	// Without the token the form is refused and nothing runs.
	if resp, _ := post("/jobs/quick/runs", url.Values{}); resp.StatusCode != 403 {
		t.Errorf("form without CSRF: %d", resp.StatusCode)
	}
	if resp, _ := post("/jobs/quick/runs", url.Values{"_csrf": {"forged"}}); resp.StatusCode != 403 {
		t.Errorf("form with a forged CSRF token: %d", resp.StatusCode)
	}
	resp, _ = post("/jobs/quick/runs", url.Values{"_csrf": {m[1]}})
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.Path, "/runs/") {
		t.Fatalf("form with CSRF: %d %s", resp.StatusCode, resp.Request.URL)
	}
	_, _, body := s.do("GET", resp.Request.URL.Path, "", "Authorization", "Bearer "+tok["alice"])
	if !strings.Contains(string(body), "alice") {
		t.Error("triggered_by is not the signed-in name")
	}
	// Sign out ends the session on the server: a copy of the cookie taken
	// before is worthless after.
	stolen := jar.Cookies(u)[0].Value
	post("/signout", url.Values{"_csrf": {m[1]}})
	if resp, _ := get("/jobs/quick"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after sign out: %d %s", resp.StatusCode, resp.Request.URL)
	}
	code, _, _ := s.do("GET", "/api/runs", "", "Cookie", sessionCookie+"="+stolen)
	if code != http.StatusUnauthorized {
		t.Errorf("the signed-out cookie still reads: %d", code)
	}
	code, _, _ = s.do("POST", "/api/jobs/quick/runs", "{}", "Cookie", sessionCookie+"="+stolen, "X-CSRF-Token", m[1])
	if code != http.StatusUnauthorized {
		t.Errorf("the signed-out cookie still deploys: %d", code)
	}
}

func TestCrossSitePostsRefusedEvenWhenOpen(t *testing.T) {
	s := startServer(t, apiConfig)
	for _, hdr := range [][]string{{"Origin", "http://evil.example"}, {"Sec-Fetch-Site", "cross-site"}} {
		code, _, _ := s.do("POST", "/jobs/quick/runs", "", hdr...)
		if code != 403 {
			t.Errorf("%v: %d", hdr, code)
		}
	}
	if n := countRuns(t, s); n != 0 {
		t.Errorf("%d runs created", n)
	}
	if code, _, _ := s.do("POST", "/api/jobs/quick/runs", "{}", "Origin", s.URL); code != 201 {
		t.Errorf("same origin: %d", code)
	}
}

func TestRefusesOpenNetworkAddress(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cfg := Config{Addr: "0.0.0.0:0", ConfigPath: dir + "/none.yaml", DataDir: dir, ShutdownGrace: time.Second}
	err := serve(ctx, cfg, io.Discard)
	if !errors.Is(err, errOpenOnNetwork) {
		t.Fatalf("serve on 0.0.0.0 without tokens: %v", err)
	}
	if !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("error does not say how: %v", err)
	}
}

func TestTokenCommand(t *testing.T) {
	code, out, _ := cli(t, nil, "token", "deploy-bot", "--role", "deployer")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	secret := regexp.MustCompile(`shiplog_[A-Za-z0-9_-]{43}`).FindString(out)
	i := strings.Index(out, "auth:\n")
	if secret == "" || i < 0 {
		t.Fatalf("output:\n%s", out)
	}
	s := startServer(t, apiConfig+out[i:])
	if code, _, body := s.do("GET", "/api/jobs", "", "Authorization", "Bearer "+secret); code != 200 {
		t.Errorf("the printed token does not work: %d %s", code, body)
	}
	if code, _, errOut := cli(t, s, "jobs"); code != exitNoPerm || !strings.Contains(errOut, "sign in") {
		t.Errorf("CLI without a token: %d %q", code, errOut)
	}
	if code, _, _ := cli(t, nil, "token", "x", "--role", "king"); code != exitUsage {
		t.Errorf("bad role: %d", code)
	}
	_ = fmt.Sprint
}
