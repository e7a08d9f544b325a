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

	dir := t.TempDir()
	s, err := LoadSessions(dir+"/key", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fps := map[string]string{"ci": "fp1", "other": "fp2"}
	fp := func(name string) (string, bool) { v, ok := fps[name]; return v, ok }
	now := time.Now()
	v := s.Issue("ci", "fp1", now)
	if name, ok := s.Verify(v, now, fp); !ok || name != "ci" {
		t.Errorf("verify: %q %v", name, ok)
	}
	for _, bad := range []string{v + "x", strings.Replace(v, "Y2k", "YWRtaW4", 1), "", "a.b.c", "a.b.c.d", "...."} {
		if _, ok := s.Verify(bad, now, fp); ok {
			t.Errorf("tampered session %q accepted", bad)
		}
	}
	if _, ok := s.Verify(v, now.Add(2*time.Hour), fp); ok {
		t.Error("expired session accepted")
	}
	if !s.CheckCSRF(v, s.CSRF(v)) || s.CheckCSRF(v, s.CSRF(s.Issue("other", "fp2", now))) || s.CheckCSRF("", s.CSRF("")) {
		t.Error("CSRF check")
	}

	// A rotated token (new fingerprint) or a removed one ends its sessions.
	fps["ci"] = "fp-rotated"
	if _, ok := s.Verify(v, now, fp); ok {
		t.Error("session outlived its token's rotation")
	}
	delete(fps, "ci")
	if _, ok := s.Verify(v, now, fp); ok {
		t.Error("session outlived its token's removal")
	}

	// Sign-out revokes, and the revocation survives a restart.
	fps["ci"] = "fp1"
	other := s.Issue("ci", "fp1", now)
	if err := s.Revoke(v, now, fp); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Verify(v, now, fp); ok {
		t.Error("revoked session accepted")
	}
	if _, ok := s.Verify(other, now, fp); !ok {
		t.Error("revoking one session ended another of the same token")
	}
	s2, err := LoadSessions(dir+"/key", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s2.Verify(v, now, fp); ok {
		t.Error("revoked session accepted after a restart")
	}
	if _, ok := s2.Verify(other, now, fp); !ok {
		t.Error("live session lost at a restart")
	}
}

func TestParsePolicyErrors(t *testing.T) {
	tests := map[string]string{
		"auth:\n  tokens:\n    - {name: a, role: boss, hash: \"sha256:" + strings.Repeat("00", 32) + "\"}\n":                                                                                    "role",
		"auth:\n  tokens:\n    - {name: a, role: viewer, hash: \"md5:00\"}\n":                                                                                                                   "hash",
		"auth:\n  tokens:\n    - {role: viewer, hash: \"sha256:" + strings.Repeat("00", 32) + "\"}\n":                                                                                           "name",
		"auth:\n  tokens:\n    - {name: a, role: deployer, jobs: [nope], hash: \"sha256:" + strings.Repeat("00", 32) + "\"}\n":                                                                  "unknown job",
		"auth:\n  tokens:\n    - {name: a, role: viewer, hash: \"sha256:" + strings.Repeat("00", 32) + "\"}\n    - {name: b, role: admin, hash: \"sha256:" + strings.Repeat("00", 32) + "\"}\n": "same as token \"a\"",
	}
	for cfg, want := range tests {
		_, err := ParsePolicy("x.yaml", []byte(cfg), func(j string) bool { return j != "nope" })
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "auth.tokens[") {
			t.Errorf("%q: %v", cfg, err)
		}
	}
}
