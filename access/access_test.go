package access

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTokensRolesAndSessions(t *testing.T) {
	secret, line, err := NewToken("ci", Deployer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := "auth:\n  tokens:\n" + line + "\n    - {name: ro, role: viewer, hash: \"sha256:" + strings.Repeat("ab", 32) + "\"}\n"
	p, err := ParsePolicy("x.yaml", []byte(cfg), func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	got, ok := p.Authenticate(secret)
	if !ok || got.Name != "ci" || got.Role != Deployer || !got.CanRun("anything") {
		t.Fatalf("authenticate: %+v %v", got, ok)
	}
	if _, ok := p.Authenticate(secret + "x"); ok {
		t.Error("a wrong token authenticated")
	}
	if strings.Contains(cfg, secret) {
		t.Error("the config line holds the secret")
	}
	ro, _ := p.Lookup("ro")
	if ro.CanRun("deploy") {
		t.Error("a viewer may run jobs")
	}
	limited := &Principal{Role: Deployer, Jobs: []string{"a"}}
	if !limited.CanRun("a") || limited.CanRun("b") {
		t.Error("job limits ignored")
	}

	s, err := LoadSessions(t.TempDir()+"/key", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v := s.Issue("ci", now)
	if name, ok := s.Verify(v, now); !ok || name != "ci" {
		t.Errorf("verify: %q %v", name, ok)
	}
	for _, bad := range []string{v + "x", strings.Replace(v, "Y2k", "YWRtaW4", 1), "", "a.b.c", "...."} {
		if _, ok := s.Verify(bad, now); ok {
			t.Errorf("tampered session %q accepted", bad)
		}
	}
	if _, ok := s.Verify(v, now.Add(2*time.Hour)); ok {
		t.Error("expired session accepted")
	}
	if !s.CheckCSRF(v, s.CSRF(v)) || s.CheckCSRF(v, s.CSRF(s.Issue("other", now))) || s.CheckCSRF("", s.CSRF("")) {
		t.Error("CSRF check")
	}
}

func TestParsePolicyErrors(t *testing.T) {
	tests := map[string]string{
		"auth:\n  tokens:\n    - {name: a, role: boss, hash: \"sha256:" + strings.Repeat("00", 32) + "\"}\n":                   "role",
		"auth:\n  tokens:\n    - {name: a, role: viewer, hash: \"md5:00\"}\n":                                                  "hash",
		"auth:\n  tokens:\n    - {role: viewer, hash: \"sha256:" + strings.Repeat("00", 32) + "\"}\n":                          "name",
		"auth:\n  tokens:\n    - {name: a, role: deployer, jobs: [nope], hash: \"sha256:" + strings.Repeat("00", 32) + "\"}\n": "unknown job",
	}
	for cfg, want := range tests {
		_, err := ParsePolicy("x.yaml", []byte(cfg), func(j string) bool { return j != "nope" })
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "auth.tokens[0]") {
			t.Errorf("%q: %v", cfg, err)
		}
	}
}
