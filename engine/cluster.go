package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// clusterName is the name every node of a shiplog engine cluster shares.
const clusterName = "shiplog"

// routeUser is the user name nodes present to each other; the password is
// the cluster's token.
const routeUser = "shiplog"

// NodeConfig is one node of an engine cluster: a JetStream server that
// keeps its share of shiplog's streams and replicates them to the other
// nodes by Raft. Three nodes keep working when one of them dies.
type NodeConfig struct {
	// Name is the node's name, unique in the cluster and kept across
	// restarts: the Raft groups know their peers by it.
	Name string
	// Dir holds the node's store.
	Dir string
	// Listen is where replicas and runners connect (host:port).
	Listen string
	// Cluster is where the other nodes connect (host:port).
	Cluster string
	// Routes are the other nodes' cluster addresses (host:port).
	Routes []string
	// Token is required of clients and of the other nodes. A node that
	// listens on anything but loopback must have one.
	Token string
	// TLS, if it names a certificate, encrypts every connection: clients
	// check it against the CA they are given, and nodes check each other.
	TLS TLS
}

// Node is a running engine node.
type Node struct {
	srv *server.Server
}

// StartNode starts an engine node and waits until it takes connections.
// The cluster's streams become usable once a majority of the nodes is up.
func StartNode(cfg NodeConfig) (*Node, error) {
	if cfg.Name == "" || strings.ContainsAny(cfg.Name, " \t\n*>.") {
		return nil, fmt.Errorf("engine node name %q: want a word, unique in the cluster", cfg.Name)
	}
	if cfg.Dir == "" {
		return nil, errors.New("engine node: no store directory")
	}
	host, port, err := hostPort("--listen", cfg.Listen)
	if err != nil {
		return nil, err
	}
	chost, cport, err := hostPort("--cluster", cfg.Cluster)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" && (!loopback(host) || !loopback(chost)) {
		return nil, errors.New("an engine node that listens beyond loopback needs a token (--token-file), so that only your nodes, replicas and runners connect")
	}
	var routes []*url.URL
	for _, r := range cfg.Routes {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		r = strings.TrimPrefix(r, "nats://")
		if _, _, err := hostPort("--routes", r); err != nil {
			return nil, err
		}
		u := &url.URL{Scheme: "nats", Host: r}
		if cfg.Token != "" {
			u.User = url.UserPassword(routeUser, cfg.Token)
		}
		routes = append(routes, u)
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: maxPayload,
		Cluster: server.ClusterOpts{
			Name: clusterName,
			Host: chost,
			Port: cport,
		},
		Routes: routes,
	}
	if cfg.Token != "" {
		opts.Authorization = cfg.Token
		opts.Cluster.Username, opts.Cluster.Password = routeUser, cfg.Token
	}
	if opts.TLSConfig, err = cfg.TLS.serverConfig(); err != nil {
		return nil, err
	}
	if opts.TLSConfig != nil {
		opts.TLS, opts.TLSTimeout = true, 5
		if opts.Cluster.TLSConfig, err = cfg.TLS.routeConfig(); err != nil {
			return nil, err
		}
		opts.Cluster.TLSTimeout = 5
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("engine node: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(startTimeout) {
		srv.Shutdown()
		return nil, errors.New("engine node: the server did not start")
	}
	return &Node{srv: srv}, nil
}

// ClientURL is where replicas and runners reach the node.
func (n *Node) ClientURL() string {
	return (&url.URL{Scheme: "nats", Host: n.srv.Addr().String()}).String()
}

// ClusterURL is where the other nodes reach the node.
func (n *Node) ClusterURL() string {
	return (&url.URL{Scheme: "nats", Host: n.srv.ClusterAddr().String()}).String()
}

// Run serves until ctx ends, then shuts the node down.
func (n *Node) Run(ctx context.Context) {
	<-ctx.Done()
	n.Close()
}

// Close shuts the node down.
func (n *Node) Close() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

func hostPort(flag, addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: want host:port", flag, addr)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s %q: bad port", flag, addr)
	}
	return host, port, nil
}
