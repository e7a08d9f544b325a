package main

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shiplog/shiplog/access"
	"github.com/shiplog/shiplog/views"
)

const sessionCookie = "shiplog_session"

var (
	errUnauthorized = &apiError{status: http.StatusUnauthorized, msg: "sign in first: send Authorization: Bearer <token>"}
	errForbidden    = &apiError{status: http.StatusForbidden, msg: "your token may not do this"}
	errCrossSite    = &apiError{status: http.StatusForbidden, msg: "cross-site request refused"}
	errCSRF         = &apiError{status: http.StatusForbidden, msg: "missing or invalid CSRF token: reload the page and try again"}
)

func principal(c echo.Context) *access.Principal {
	p, _ := c.Get("principal").(*access.Principal)
	return p
}

func changesState(r *http.Request) bool {
	return r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions
}

// sameOrigin refuses what a browser sends on behalf of another site; tools
// like curl send neither header and pass. An Origin must be this site
// exactly: same scheme and host ("null", sent from sandboxed frames and
// data: URLs, is never this site).
func (s *server) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if s.publicOrigin != "" && origin == s.publicOrigin {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" || !strings.EqualFold(u.Host, r.Host) {
		return false
	}
	return u.Scheme == s.requestScheme(r)
}

// requestScheme is the scheme the client used: https when TLS ends here, or
// when a listed proxy that ended it says so.
func (s *server) requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if len(s.trustedProxies) > 0 && r.Header.Get("X-Forwarded-Proto") == "https" {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if ip := net.ParseIP(host); ip != nil {
				for _, n := range s.trustedProxies {
					if n.Contains(ip) {
						return "https"
					}
				}
			}
		}
	}
	return "http"
}

// public paths need no sign-in.
func public(path string) bool {
	return path == "/signin" || path == "/healthz" || strings.HasPrefix(path, "/static/")
}

// authenticate finds who a request comes from and refuses what they may not
// do; handlers check job-level permissions with mayRun.
func (s *server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if changesState(r) && !s.sameOrigin(r) {
			return errCrossSite
		}
		if s.policy.Open() {
			c.Set("principal", access.Anonymous)
			return next(c)
		}
		if h := r.Header.Get("Authorization"); h != "" {
			secret, ok := strings.CutPrefix(h, "Bearer ")
			p, found := s.policy.Authenticate(strings.TrimSpace(secret))
			if !ok || !found {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="shiplog"`)
				return &apiError{status: http.StatusUnauthorized, msg: "invalid token"}
			}
			c.Set("principal", p)
			return next(c)
		}
		if ck, err := r.Cookie(sessionCookie); err == nil {
			if name, ok := s.sessions.Verify(ck.Value, time.Now(), s.policy.Fingerprint); ok {
				if p, ok := s.policy.Lookup(name); ok {
					if changesState(r) && !s.sessions.CheckCSRF(ck.Value, csrfToken(c)) {
						return errCSRF
					}
					c.Set("principal", p)
					c.Set("session", ck.Value)
					return next(c)
				}
			}
		}
		if public(r.URL.Path) {
			return next(c)
		}
		if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/api/") && wantsHTML(r) {
			return c.Redirect(http.StatusSeeOther, "/signin?next="+url.QueryEscape(r.URL.RequestURI()))
		}
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="shiplog"`)
		return errUnauthorized
	}
}

func csrfToken(c echo.Context) string {
	if v := c.Request().Header.Get("X-CSRF-Token"); v != "" {
		return v
	}
	return c.FormValue("_csrf")
}

// mayRun checks that the caller may trigger, cancel or re-run job.
func mayRun(c echo.Context, job string) error {
	if !principal(c).CanRun(job) {
		return errForbidden
	}
	return nil
}

// session is what pages need to know of the caller.
func (s *server) session(c echo.Context) views.Session {
	p := principal(c)
	v := views.Session{Auth: !s.policy.Open()}
	if p != nil {
		v.User = p.Name
		v.Role = p.Role.String()
	}
	if sess, ok := c.Get("session").(string); ok {
		v.CSRF = s.sessions.CSRF(sess)
	}
	return v
}

func (s *server) showSignIn(c echo.Context) error {
	return render(c, http.StatusOK, views.SignInPage(views.SignIn{Next: safeNext(c.QueryParam("next")), Session: s.session(c)}))
}

// safeNext keeps a redirect on this site: a path, never a scheme or host.
// Browsers drop tabs and newlines from URLs and read a backslash as a
// slash, so "/\t/evil.example" would be "//evil.example": any control
// character or backslash sends the user home instead.
func safeNext(next string) string {
	if next == "" || next[0] != '/' || strings.ContainsRune(next, '\\') ||
		strings.IndexFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(u.Path, "//") || strings.HasPrefix(next, "//") {
		return "/"
	}
	return next
}

func (s *server) signIn(c echo.Context) error {
	if s.policy.Open() {
		return c.Redirect(http.StatusSeeOther, "/")
	}
	next := safeNext(c.FormValue("next"))
	p, ok := s.policy.Authenticate(strings.TrimSpace(c.FormValue("token")))
	if !ok {
		return render(c, http.StatusUnauthorized, views.SignInPage(views.SignIn{Next: next, Error: "That token is not valid.", Session: s.session(c)}))
	}
	fingerprint, _ := s.policy.Fingerprint(p.Name)
	c.SetCookie(&http.Cookie{
		Name: sessionCookie, Value: s.sessions.Issue(p.Name, fingerprint, time.Now()), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: c.Request().TLS != nil,
		MaxAge: int(sessionTTL.Seconds()),
	})
	return c.Redirect(http.StatusSeeOther, next)
}

func (s *server) signOut(c echo.Context) error {
	// The session ends on the server, not only in this browser: a copied
	// cookie is worthless after sign-out.
	if sess, ok := c.Get("session").(string); ok {
		if err := s.sessions.Revoke(sess, time.Now(), s.policy.Fingerprint); err != nil {
			return err
		}
	}
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return c.Redirect(http.StatusSeeOther, "/signin")
}

const sessionTTL = 12 * time.Hour

// loopback reports whether addr (host:port) listens only on this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var errOpenOnNetwork = errors.New("refusing to serve without tokens on a non-loopback address: anyone who can reach it could run jobs. Add tokens to the config (create one with 'shiplog token NAME'), listen on 127.0.0.1, or pass --insecure")
