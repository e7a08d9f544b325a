package engine

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLS names the files that encrypt the engine's connections: a node's (or
// an embedded engine's) certificate and key, and the CA that signed the
// certificates, which clients and the other nodes check them against.
type TLS struct {
	Cert, Key, CA string
}

// serverConfig is the listener's TLS, nil without a certificate.
func (t TLS) serverConfig() (*tls.Config, error) {
	if t.Cert == "" && t.Key == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("engine TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// routeConfig is the TLS between the nodes of a cluster: each presents
// its certificate and checks the other's against the CA, both ways.
func (t TLS) routeConfig() (*tls.Config, error) {
	cfg, err := t.serverConfig()
	if cfg == nil || err != nil {
		return nil, err
	}
	if t.CA == "" {
		return nil, fmt.Errorf("engine TLS: the nodes check each other's certificates against a CA: give --tls-ca")
	}
	pool, err := loadCA(t.CA)
	if err != nil {
		return nil, err
	}
	cfg.RootCAs, cfg.ClientCAs, cfg.ClientAuth = pool, pool, tls.RequireAndVerifyClientCert
	return cfg, nil
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("engine TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("engine TLS CA %s: no certificate in it", path)
	}
	return pool, nil
}
