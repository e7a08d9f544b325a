// Package access decides who may do what: API tokens (stored as hashes),
// roles, browser sessions and CSRF tokens.
package access

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Role is what a token may do; each role includes the ones before it.
type Role int

// The roles.
const (
	Viewer   Role = iota + 1 // read pages, logs and status
	Deployer                 // also trigger, cancel and re-run (optionally only some jobs)
	Admin                    // everything
)

func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Deployer:
		return "deployer"
	case Admin:
		return "admin"
	}
	return "none"
}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{Viewer, Deployer, Admin} {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (want viewer, deployer or admin)", s)
}

// Principal is who a request comes from.
type Principal struct {
	Name string
	Role Role
	Jobs []string // a deployer limited to these jobs; empty means all
	// Session is true when the principal came from a browser session cookie,
	// which is why CSRF tokens are needed.
	Session bool
}

// Can reports whether p may run (trigger, cancel, re-run) job.
func (p *Principal) CanRun(job string) bool {
	if p == nil || p.Role < Deployer {
		return false
	}
	return p.Role == Admin || len(p.Jobs) == 0 || slices.Contains(p.Jobs, job)
}

// Anonymous is everyone when no tokens are configured (loopback only).
var Anonymous = &Principal{Name: "anonymous", Role: Admin}

// Token is one configured token: never the secret, only its hash.
type Token struct {
	Name string
	Role Role
	Jobs []string
	hash [sha256.Size]byte
}

// Policy is the configured tokens; with none, access is open.
type Policy struct {
	tokens []Token
}

// Open reports whether no tokens are configured.
func (p *Policy) Open() bool { return len(p.tokens) == 0 }

// Authenticate returns the principal of a bearer token.
func (p *Policy) Authenticate(secret string) (*Principal, bool) {
	h := sha256.Sum256([]byte(secret))
	for _, t := range p.tokens {
		if subtle.ConstantTimeCompare(h[:], t.hash[:]) == 1 {
			return &Principal{Name: t.Name, Role: t.Role, Jobs: t.Jobs}, true
		}
	}
	return nil, false
}

// Lookup returns the principal of a token by name (for sessions).
func (p *Policy) Lookup(name string) (*Principal, bool) {
	for _, t := range p.tokens {
		if t.Name == name {
			return &Principal{Name: t.Name, Role: t.Role, Jobs: t.Jobs, Session: true}, true
		}
	}
	return nil, false
}

// ErrConfig marks an invalid auth section.
var ErrConfig = errors.New("invalid auth config")

type fileConfig struct {
	Auth struct {
		Tokens []struct {
			Name string   `yaml:"name"`
			Role string   `yaml:"role"`
			Jobs []string `yaml:"jobs"`
			Hash string   `yaml:"hash"`
		} `yaml:"tokens"`
	} `yaml:"auth"`
}

// ParsePolicy reads the auth section of a config file; name is used in
// errors. knownJob checks the jobs a token is limited to.
func ParsePolicy(name string, data []byte, knownJob func(string) bool) (*Policy, error) {
	var fc fileConfig
	if err := yaml.Unmarshal(data, &fc); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	p := &Policy{}
	seen := map[string]bool{}
	for i, t := range fc.Auth.Tokens {
		fail := func(field, format string, args ...any) error {
			return fmt.Errorf("%w: %s: auth.tokens[%d].%s: %s", ErrConfig, name, i, field, fmt.Sprintf(format, args...))
		}
		if t.Name == "" || strings.ContainsAny(t.Name, "|\n") {
			return nil, fail("name", "is required (no '|' or newlines)")
		}
		if seen[t.Name] {
			return nil, fail("name", "%q is defined twice", t.Name)
		}
		seen[t.Name] = true
		role, err := ParseRole(t.Role)
		if err != nil {
			return nil, fail("role", "%v", err)
		}
		hexHash, ok := strings.CutPrefix(t.Hash, "sha256:")
		raw, err := hex.DecodeString(hexHash)
		if !ok || err != nil || len(raw) != sha256.Size {
			return nil, fail("hash", "want sha256:<64 hex digits>, as printed by 'shiplog token'")
		}
		for _, j := range t.Jobs {
			if !knownJob(j) {
				return nil, fail("jobs", "unknown job %q", j)
			}
		}
		tok := Token{Name: t.Name, Role: role, Jobs: t.Jobs}
		copy(tok.hash[:], raw)
		p.tokens = append(p.tokens, tok)
	}
	return p, nil
}

// NewToken returns a new random secret and the config line that grants it.
func NewToken(name string, role Role) (secret, line string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	secret = "shiplog_" + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(secret))
	line = fmt.Sprintf("    - {name: %s, role: %s, hash: \"sha256:%x\"}", name, role, h)
	return secret, line, nil
}

// Sessions signs browser session cookies and CSRF tokens with a key kept in
// the data directory, so sessions survive restarts.
type Sessions struct {
	key []byte
	ttl time.Duration
}

// LoadSessions reads the key at path, creating it on first use.
func LoadSessions(path string, ttl time.Duration) (*Sessions, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, key, 0o600); err != nil {
			return nil, fmt.Errorf("write session key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read session key: %w", err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("session key %s is too short", path)
	}
	return &Sessions{key: key, ttl: ttl}, nil
}

func (s *Sessions) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(strings.Join(parts, "|")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Issue returns a session cookie value for name.
func (s *Sessions) Issue(name string, now time.Time) string {
	exp := strconv.FormatInt(now.Add(s.ttl).Unix(), 10)
	return base64.RawURLEncoding.EncodeToString([]byte(name)) + "." + exp + "." + s.mac("session", name, exp)
}

// Verify returns the name in a session cookie value that is genuine and
// unexpired.
func (s *Sessions) Verify(v string, now time.Time) (string, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return "", false
	}
	name, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return "", false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(s.mac("session", string(name), parts[1]))) {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || now.Unix() > exp {
		return "", false
	}
	return string(name), true
}

// CSRF returns the CSRF token bound to a session cookie value.
func (s *Sessions) CSRF(session string) string { return s.mac("csrf", session) }

// CheckCSRF reports whether token belongs to session.
func (s *Sessions) CheckCSRF(session, token string) bool {
	return session != "" && hmac.Equal([]byte(token), []byte(s.CSRF(session)))
}
