package main

import (
	"net/http"
	"strings"
	"testing"
)

// What a web page can make a browser send to a shiplog on loopback: each of
// these was accepted by the first version (see SECURITY.md).
func TestWebPageCannotDriveOpenServer(t *testing.T) {
	s := startServer(t, apiConfig)
	port := s.URL[strings.LastIndex(s.URL, ":")+1:]
	tests := []struct {
		name string
		hdr  []string
		want int
	}{
		// DNS rebinding: evil.example resolves to 127.0.0.1, so the page is
		// "same origin" with the request; only Host tells them apart.
		{"rebound host", []string{"Host", "evil.example:" + port, "Origin", "http://evil.example:" + port, "Sec-Fetch-Site", "same-origin"}, http.StatusMisdirectedRequest},
		{"rebound host without port", []string{"Host", "evil.example"}, http.StatusMisdirectedRequest},
		{"origin null", []string{"Origin", "null"}, http.StatusForbidden},
		{"origin other scheme", []string{"Origin", "https://127.0.0.1:" + port}, http.StatusForbidden},
		{"origin other port", []string{"Origin", "http://127.0.0.1:1"}, http.StatusForbidden},
		{"origin with path", []string{"Origin", s.URL + "/x"}, http.StatusForbidden},
		{"cross-site fetch", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"same-site fetch", []string{"Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{"JSON as text/plain", []string{"Content-Type", "text/plain"}, http.StatusUnsupportedMediaType},
		{"JSON as form", []string{"Content-Type", "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		// What must keep working.
		{"curl", nil, http.StatusCreated},
		{"localhost by name", []string{"Host", "localhost:" + port}, http.StatusCreated},
		{"same origin", []string{"Origin", s.URL, "Sec-Fetch-Site", "same-origin"}, http.StatusCreated},
		{"JSON with charset", []string{"Content-Type", "application/json; charset=utf-8"}, http.StatusCreated},
	}
	created := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := s.do("POST", "/api/jobs/quick/runs", "{}", tt.hdr...)
			if code != tt.want {
				t.Errorf("%d, want %d: %s", code, tt.want, body)
			}
			if code == http.StatusCreated {
				created++
			}
		})
	}
	if n := countRuns(t, s); n != created {
		t.Errorf("%d runs exist, want the %d allowed", n, created)
	}
	// Reads too: a rebound page must not read logs or status.
	if code, _, _ := s.do("GET", "/api/runs", "", "Host", "evil.example:"+port); code != http.StatusMisdirectedRequest {
		t.Errorf("rebound read: %d", code)
	}
}

func TestHostsListedByOperatorAreAnswered(t *testing.T) {
	s := startServer(t, apiConfig, func(c *Config) {
		c.PublicURL = "https://deploy.example.com"
		c.AllowedHosts = []string{"shiplog.internal", "*.corp.example"}
	})
	for host, want := range map[string]int{
		"deploy.example.com":      200,
		"shiplog.internal:8080":   200,
		"a.corp.example":          200,
		"corp.example":            421,
		"deploy.example.com.evil": 421,
		"xdeploy.example.com":     421,
		"[::1]:80":                200,
		"10.1.2.3":                421, // the server listens on 127.0.0.1 only
	} {
		req, _ := http.NewRequest("GET", s.URL+"/healthz", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %q: %d, want %d", host, resp.StatusCode, want)
		}
	}
	// Origin of the public URL is this site, though TLS ends at a proxy.
	code, _, body := s.do("POST", "/api/jobs/quick/runs", "{}", "Host", "deploy.example.com", "Origin", "https://deploy.example.com")
	if code != http.StatusCreated {
		t.Errorf("public origin: %d %s", code, body)
	}
}

func TestEveryAnswerForbidsFramingAndSniffing(t *testing.T) {
	s := startServer(t, apiConfig)
	for _, path := range []string{"/", "/jobs/quick", "/runs", "/api/runs", "/healthz", "/nope", "/static/app.css"} {
		_, hdr, _ := s.do("GET", path, "", "Accept", "text/html")
		for name, want := range map[string]string{
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
			"Content-Security-Policy": "frame-ancestors 'none'",
		} {
			if !strings.Contains(hdr.Get(name), want) {
				t.Errorf("%s: %s = %q, want %q", path, name, hdr.Get(name), want)
			}
		}
		if csp := hdr.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: CSP %q should allow only the app's own scripts", path, csp)
		}
	}
}

func TestSignInNeverRedirectsOffSite(t *testing.T) {
	tests := []struct{ next, want string }{
		{"/runs/3", "/runs/3"},
		{"/jobs/x?y=1#L2", "/jobs/x?y=1#L2"},
		{"//evil.example", "/"},
		{"/\t/evil.example/phish.html", "/"},
		{"/\n/evil.example", "/"},
		{`/\evil.example`, "/"},
		{`/x\..\..`, "/"},
		{"https://evil.example", "/"},
		{"evil.example", "/"},
		{"", "/"},
		{"/%2F/evil.example", "/"}, // decodes to //evil.example: refused to be safe
	}
	for _, tt := range tests {
		if got := safeNext(tt.next); got != tt.want {
			t.Errorf("safeNext(%q) = %q, want %q", tt.next, got, tt.want)
		}
	}
}
