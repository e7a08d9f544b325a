package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shiplog/shiplog/sse"
)

// selfSigned writes a certificate for 127.0.0.1 and returns its files and a
// pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shiplog test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// Over TLS shiplog speaks HTTP/2: ten live logs and a page load share one
// connection (over HTTP/1.1 a browser would stall after about six).
func TestTLSServesHTTP2OnOneConnection(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	s := startServer(t, apiConfig, func(c *Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	if s.URL[:8] != "https://" {
		t.Fatalf("server URL %s", s.URL)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}

	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		mu.Lock()
		conns[info.Conn] = true
		mu.Unlock()
	}}
	get := func(ctx context.Context, path string) *http.Response {
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "GET", s.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Proto != "HTTP/2.0" {
			t.Errorf("%s: %s", path, resp.Proto)
		}
		return resp
	}
	// The page first, so the connection exists before the streams open.
	page := get(context.Background(), "/")
	io.Copy(io.Discard, page.Body)
	page.Body.Close()
	runs := make([]int64, 10)
	for i := range runs {
		req, _ := http.NewRequest("POST", s.URL+"/api/jobs/gate/runs", nil)
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("trigger: %v %v", err, resp)
		}
		resp.Body.Close()
		runs[i] = int64(i + 1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range runs {
		resp := get(ctx, fmt.Sprintf("/api/runs/%d/events", id))
		if resp.StatusCode != 200 {
			t.Fatalf("stream %d: %d", id, resp.StatusCode)
		}
		defer resp.Body.Close()
	}
	// A page load while ten streams are open goes through at once.
	page = get(context.Background(), "/runs")
	io.Copy(io.Discard, page.Body)
	page.Body.Close()
	if page.StatusCode != 200 {
		t.Errorf("page during streams: %d", page.StatusCode)
	}
	if len(conns) != 1 {
		t.Errorf("%d connections, want 1", len(conns))
	}
	cancel()
	for _, id := range runs {
		s.release(id)
	}
}

// A client that speaks only HTTP/1.1 over TLS gets the stream on the TLS
// connection itself, whole, to its end.
func TestTLSEventStreamOverHTTP1(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	s := startServer(t, apiConfig, func(c *Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // no HTTP/2
	}}
	req, _ := http.NewRequest("POST", s.URL+"/api/jobs/quick/runs", nil)
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("trigger: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, err = client.Get(s.URL + "/api/runs/1/events") // to the run's end
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Proto != "HTTP/1.1" || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("%s %v", resp.Proto, resp.Header)
	}
	dec := sse.NewDecoder(resp.Body)
	var lines []string
	for {
		ev, err := dec.Next()
		if err != nil {
			t.Fatalf("after %q: %v", lines, err)
		}
		if ev.Name == "log" {
			lines = append(lines, ev.Lines()...)
		}
		if ev.Name == "end" {
			break
		}
	}
	if strings.Join(lines, "|") != "quick" {
		t.Errorf("lines %q", lines)
	}
}
