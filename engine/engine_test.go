package engine

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The default engine is embedded and opens no port.
func TestEmbeddedOpensNoPort(t *testing.T) {
	e := startEngine(t, Config{})
	if u := e.ClientURL(); u != "" {
		t.Errorf("embedded engine listens at %s", u)
	}
}

// An engine that listens off loopback needs a token; on loopback it may
// go without. A client with the token reaches the same streams; one
// without is refused.
func TestListenAndConnect(t *testing.T) {
	if _, err := Start(context.Background(), Config{Dir: t.TempDir(), Listen: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("listening on every interface without a token: %v, want refused", err)
	}
	for _, token := range []string{"", "s3cret-token-for-runners"} {
		name := "loopback without token"
		if token != "" {
			name = "with token"
		}
		t.Run(name, func(t *testing.T) {
			e := startEngine(t, Config{Listen: freeAddr(t), Token: token})
			if e.ClientURL() == "" {
				t.Fatal("no client URL")
			}
			remote := startEngine(t, Config{URL: e.ClientURL(), Token: token})
			// A log shipped through the remote connection is in the
			// embedded server's stream.
			src := filepath.Join(t.TempDir(), "5.log")
			p := newLogProducer(t, src)
			p.write(t, testLines(1), true)
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			sh := remote.ShipLog(ctx, 5, src)
			sh.Finish(p.size)
			if err := sh.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			sameFiles(t, src, mirror(t, ctx, e, 5))
			if token != "" {
				if _, err := Start(context.Background(), Config{URL: e.ClientURL(), Token: "wrong"}); err == nil {
					t.Error("a wrong token was let in")
				}
				if _, err := Start(context.Background(), Config{URL: e.ClientURL()}); err == nil {
					t.Error("no token was let in")
				}
			}
		})
	}
}
