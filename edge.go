package main

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// The headers every answer carries. The policy allows the app's own scripts
// and styles only (no inline ones), no framing (clickjacking), and forms
// that post back to this site.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		return next(c)
	}
}

// hostPolicy decides which Host headers the server answers. A web page can
// make a browser send requests to 127.0.0.1 under its own name (DNS
// rebinding); the Host header is the one thing it cannot choose, so only the
// names this server is reached by are accepted.
type hostPolicy struct {
	names    map[string]bool // exact host names (lower case, no port)
	suffix   []string        // from "*.example.com": ".example.com"
	anyIP    bool            // listening on all interfaces: any IP literal
	listenIP net.IP
}

// newHostPolicy builds the policy for a server listening on addr, reached at
// publicURL (may be empty), answering also to the hosts listed.
func newHostPolicy(addr, publicURL string, allowed []string) (*hostPolicy, error) {
	p := &hostPolicy{names: map[string]bool{"localhost": true}}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			p.anyIP = ip.IsUnspecified()
			p.listenIP = ip
		} else if host == "" {
			p.anyIP = true
		} else {
			p.names[strings.ToLower(host)] = true
		}
	}
	if publicURL != "" {
		u, err := url.Parse(publicURL)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("--public-url %q: want an http or https URL such as https://deploy.example.com", publicURL)
		}
		p.names[strings.ToLower(u.Hostname())] = true
	}
	for _, h := range allowed {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "":
		case strings.HasPrefix(h, "*.") && len(h) > 2:
			p.suffix = append(p.suffix, h[1:])
		case strings.ContainsAny(h, "/:*@ "):
			return nil, fmt.Errorf("--allowed-hosts: %q is not a host name (give names without scheme or port, or *.domain)", h)
		default:
			p.names[h] = true
		}
	}
	return p, nil
}

// allows reports whether a request's Host header names this server.
func (p *hostPolicy) allows(hostHeader string) bool {
	host := hostHeader
	if h, _, err := net.SplitHostPort(hostHeader); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return false
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		// An IP literal cannot be rebound: only a name can.
		return ip.IsLoopback() || p.anyIP || (p.listenIP != nil && ip.Equal(p.listenIP))
	}
	if p.names[host] || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, s := range p.suffix {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

var errMisdirected = &apiError{status: http.StatusMisdirectedRequest,
	msg: "this server does not answer to that Host; if it is the name you reach shiplog by, pass it to --allowed-hosts or --public-url"}

func (s *server) checkHost(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.hosts != nil && !s.hosts.allows(c.Request().Host) {
			return errMisdirected
		}
		return next(c)
	}
}

// ipExtractor reads a client's address from the socket, or from
// X-Forwarded-For when (and only when) the request comes through one of the
// listed proxies: anyone else can write that header.
func ipExtractor(proxies []*net.IPNet) echo.IPExtractor {
	if len(proxies) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range proxies {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// parseCIDRs reads a comma-separated list of CIDRs or single addresses.
func parseCIDRs(list string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, v := range strings.Split(list, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !strings.Contains(v, "/") {
			if ip := net.ParseIP(v); ip != nil {
				bits := 128
				if ip.To4() != nil {
					bits = 32
				}
				v = fmt.Sprintf("%s/%d", v, bits)
			}
		}
		_, n, err := net.ParseCIDR(v)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %q is not an address or CIDR", v)
		}
		out = append(out, n)
	}
	return out, nil
}

var errNotJSON = &apiError{status: http.StatusUnsupportedMediaType, msg: "send the body as Content-Type: application/json"}

// requireJSON refuses a body that is not declared JSON. A browser sends
// text/plain across sites without asking first (a "simple" request), so a
// JSON API that accepted it could be driven by a form on another site.
func requireJSON(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength == 0 {
			return next(c) // no body at all: nothing to misread
		}
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return errNotJSON
		}
		return next(c)
	}
}
