package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/shiplog/shiplog/engine"
)

// engineFlags is "shiplog engine": one node of an engine cluster.
type engineFlags struct {
	node      engine.NodeConfig
	tokenFile string
}

func parseEngineFlags(args []string, stderr io.Writer) (engineFlags, error) {
	fs := flag.NewFlagSet("shiplog engine", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f engineFlags
	host, _ := os.Hostname()
	var routes string
	fs.StringVar(&f.node.Name, "name", envOr("SHIPLOG_ENGINE_NAME", host), "this node's name, unique in the cluster and the same across restarts (env SHIPLOG_ENGINE_NAME)")
	fs.StringVar(&f.node.Dir, "data", envOr("SHIPLOG_DATA", "shiplog-engine"), "directory for this node's store (env SHIPLOG_DATA)")
	fs.StringVar(&f.node.Listen, "listen", envOr("SHIPLOG_ENGINE_LISTEN", "127.0.0.1:4222"), "where replicas and runners connect (env SHIPLOG_ENGINE_LISTEN)")
	fs.StringVar(&f.node.Cluster, "cluster", envOr("SHIPLOG_ENGINE_CLUSTER", "127.0.0.1:6222"), "where the other nodes connect (env SHIPLOG_ENGINE_CLUSTER)")
	fs.StringVar(&routes, "routes", envOr("SHIPLOG_ENGINE_ROUTES", ""), "the other nodes' --cluster addresses, comma-separated (env SHIPLOG_ENGINE_ROUTES)")
	fs.StringVar(&f.node.TLS.Cert, "tls-cert", envOr("SHIPLOG_ENGINE_TLS_CERT", ""), "this node's TLS certificate (PEM): every connection, from clients and between nodes, is then encrypted (env SHIPLOG_ENGINE_TLS_CERT)")
	fs.StringVar(&f.node.TLS.Key, "tls-key", envOr("SHIPLOG_ENGINE_TLS_KEY", ""), "its key (env SHIPLOG_ENGINE_TLS_KEY)")
	fs.StringVar(&f.node.TLS.CA, "tls-ca", envOr("SHIPLOG_ENGINE_TLS_CA", ""), "the CA that signed the nodes' certificates; nodes check each other against it (env SHIPLOG_ENGINE_TLS_CA)")
	fs.StringVar(&f.tokenFile, "token-file", envOr("SHIPLOG_NATS_TOKEN_FILE", ""), "file holding the token that nodes, replicas and runners share; required beyond loopback (env SHIPLOG_NATS_TOKEN_FILE)")
	if err := fs.Parse(args); err != nil {
		return f, &exitError{code: exitUsage}
	}
	if fs.NArg() > 0 {
		return f, &exitError{code: exitUsage, msg: fmt.Sprintf("shiplog engine takes no arguments, got %q", fs.Args())}
	}
	if routes != "" {
		f.node.Routes = strings.Split(routes, ",")
	}
	return f, nil
}

// runEngine serves one engine node until ctx ends.
func runEngine(ctx context.Context, f engineFlags, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	token, err := readToken(f.tokenFile)
	if err != nil {
		return err
	}
	f.node.Token = token
	unlock, err := lockDataDir(f.node.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	n, err := engine.StartNode(f.node)
	if err != nil {
		return err
	}
	if f.node.TLS.Cert == "" && !loopback(f.node.Listen) {
		log.Warn("the engine's connections are not encrypted: give --tls-cert, --tls-key and --tls-ca, or keep them on a private network")
	}
	log.Info("shiplog engine node is serving", "name", f.node.Name, "url", n.ClientURL(), "cluster", n.ClusterURL(), "routes", len(f.node.Routes))
	n.Run(ctx)
	log.Info("shiplog engine node stopped", "name", f.node.Name)
	return nil
}
