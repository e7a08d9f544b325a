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
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
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

// Fingerprint identifies the current secret of the token name: sessions
// carry it, so a session ends when its token is removed or rotated.
func (p *Policy) Fingerprint(name string) (string, bool) {
	for _, t := range p.tokens {
		if t.Name == name {
			return hex.EncodeToString(t.hash[:8]), true
		}
	}
	return "", false
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
		for _, other := range p.tokens {
			if other.hash == tok.hash {
				return nil, fail("hash", "is the same as token %q's: one secret would be two people", other.Name)
			}
		}
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
// the data directory, so sessions survive restarts. A session names its
// token and that token's fingerprint, and has an ID that sign-out revokes.
type Sessions struct {
	key         []byte
	ttl         time.Duration
	revokedPath string

	mu      sync.Mutex
	revoked map[string]int64 // session ID → its expiry (Unix s), kept until then
}

// LoadSessions reads the key at path, creating it on first use, and the
// list of revoked sessions beside it.
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
	s := &Sessions{key: key, ttl: ttl, revokedPath: path + ".revoked", revoked: map[string]int64{}}
	if err := s.loadRevoked(time.Now()); err != nil {
		return nil, err
	}
	return s, nil
}

// maxRevoked bounds the revocation list: sign-outs past it (within one
// session lifetime) are refused rather than forgotten.
const maxRevoked = 100_000

// loadRevoked reads the revoked sessions not yet expired, and rewrites the
// file without the expired ones.
func (s *Sessions) loadRevoked(now time.Time) error {
	data, err := os.ReadFile(s.revokedPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read revoked sessions: %w", err)
	}
	var keep strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		id, expS, ok := strings.Cut(line, " ")
		exp, err := strconv.ParseInt(expS, 10, 64)
		if !ok || err != nil || exp < now.Unix() || len(s.revoked) >= maxRevoked {
			continue
		}
		s.revoked[id] = exp
		keep.WriteString(line + "\n")
	}
	if err := os.WriteFile(s.revokedPath, []byte(keep.String()), 0o600); err != nil {
		return fmt.Errorf("write revoked sessions: %w", err)
	}
	return nil
}

func (s *Sessions) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(strings.Join(parts, "|")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Issue returns a session cookie value for name, bound to fingerprint (see
// Policy.Fingerprint).
func (s *Sessions) Issue(name, fingerprint string, now time.Time) string {
	exp := strconv.FormatInt(now.Add(s.ttl).Unix(), 10)
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	id := base64.RawURLEncoding.EncodeToString(b)
	return base64.RawURLEncoding.EncodeToString([]byte(name)) + "." + exp + "." + id + "." + s.mac("session", name, exp, id, fingerprint)
}

// parse checks a session cookie value's signature against the current
// fingerprint of the token it names.
func (s *Sessions) parse(v string, fingerprint func(name string) (string, bool)) (name, id string, exp int64, ok bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 4 {
		return "", "", 0, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return "", "", 0, false
	}
	fp, found := fingerprint(string(raw))
	if !found || !hmac.Equal([]byte(parts[3]), []byte(s.mac("session", string(raw), parts[1], parts[2], fp))) {
		return "", "", 0, false
	}
	exp, err = strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return "", "", 0, false
	}
	return string(raw), parts[2], exp, true
}

// Verify returns the name in a session cookie value that is genuine,
// unexpired, not revoked, and issued for its token's current secret.
func (s *Sessions) Verify(v string, now time.Time, fingerprint func(name string) (string, bool)) (string, bool) {
	name, id, exp, ok := s.parse(v, fingerprint)
	if !ok || now.Unix() > exp {
		return "", false
	}
	s.mu.Lock()
	_, revoked := s.revoked[id]
	s.mu.Unlock()
	if revoked {
		return "", false
	}
	return name, true
}

// ErrTooManyRevoked is returned by Revoke when the list is full.
var ErrTooManyRevoked = errors.New("too many sessions signed out lately")

// Revoke ends a genuine session for good (sign-out), on disk so a restart
// does not bring it back.
func (s *Sessions) Revoke(v string, now time.Time, fingerprint func(name string) (string, bool)) error {
	_, id, exp, ok := s.parse(v, fingerprint)
	if !ok || now.Unix() > exp {
		return nil // not a live session: nothing to end
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, done := s.revoked[id]; done {
		return nil
	}
	if len(s.revoked) >= maxRevoked {
		for k, e := range s.revoked {
			if e < now.Unix() {
				delete(s.revoked, k)
			}
		}
		if len(s.revoked) >= maxRevoked {
			return ErrTooManyRevoked
		}
	}
	f, err := os.OpenFile(s.revokedPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s %d\n", id, exp); err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	s.revoked[id] = exp
	return nil
}

// CSRF returns the CSRF token bound to a session cookie value.
func (s *Sessions) CSRF(session string) string { return s.mac("csrf", session) }

// CheckCSRF reports whether token belongs to session.
func (s *Sessions) CheckCSRF(session, token string) bool {
	return session != "" && hmac.Equal([]byte(token), []byte(s.CSRF(session)))
}
