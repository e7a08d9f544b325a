package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// testCerts are a CA and a certificate it signed for 127.0.0.1, good for
// servers and clients (the nodes of a cluster are both to each other).
func testCerts(t *testing.T) TLS {
	t.Helper()
	dir := filepath.Join("..", "testdata", "tls")
	return TLS{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "engine.pem"), Key: filepath.Join(dir, "engine-key.pem")}
}

// Three nodes with TLS between them and to their clients: a client that
// trusts their CA uses the cluster (its streams kept by all three), one
// that does not, or that comes without the token, is refused.
func TestClusterNodesSpeakTLS(t *testing.T) {
	certs := testCerts(t)
	var routes, clients []string
	for range 3 {
		routes, clients = append(routes, freeAddr(t)), append(clients, freeAddr(t))
	}
	for i := range 3 {
		n, err := StartNode(NodeConfig{Name: fmt.Sprintf("n%d", i+1), Dir: t.TempDir(), Listen: clients[i], Cluster: routes[i],
			Routes: routes, Token: "t0ken", TLS: certs})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
	}
	url := "nats://" + strings.Join(clients, ",nats://")
	e := startEngine(t, Config{URL: url, Token: "t0ken", TLS: TLS{CA: certs.CA}})
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	info, err := e.logs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("the log stream over TLS: %d copies, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	if err := e.Enqueue(ctx, "default", "", 1); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		what string
		cfg  Config
	}{
		{"without the CA", Config{URL: url, Token: "t0ken"}},
		{"without the token", Config{URL: url, TLS: TLS{CA: certs.CA}}},
	} {
		if e, err := Start(ctx, bad.cfg); err == nil {
			e.Close()
			t.Errorf("a client %s joined the cluster", bad.what)
		}
	}
}

// An embedded engine that lets replicas in over TLS: its own process
// still uses it, and a replica that trusts the CA joins.
func TestEmbeddedListenerSpeaksTLS(t *testing.T) {
	certs := testCerts(t)
	addr := freeAddr(t)
	node := startEngine(t, Config{Listen: addr, Token: "t0ken", TLS: TLS{Cert: certs.Cert, Key: certs.Key}})
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := node.Enqueue(ctx, "default", "", 1); err != nil {
		t.Fatalf("the embedding process: %v", err)
	}
	replica := startEngine(t, Config{URL: "nats://" + addr, Token: "t0ken", TLS: TLS{CA: certs.CA}})
	if err := replica.Enqueue(ctx, "default", "", 2); err != nil {
		t.Fatalf("a replica over TLS: %v", err)
	}
	if e, err := Start(ctx, Config{URL: "nats://" + addr, Token: "t0ken"}); err == nil {
		e.Close()
		t.Error("a replica that does not trust the engine's certificate joined")
	}
}
