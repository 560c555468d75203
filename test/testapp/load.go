package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
)

const saNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func loadMain(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	ns := fs.String("namespace", "", "the Service's namespace (default: the pod's own)")
	svc := fs.String("service", "", "the Service whose EndpointSlices to follow")
	port := fs.Int("port", 80, "the pods' port")
	clients := fs.Int("clients", 4, "concurrent clients")
	keepAlive := fs.Int("keepalive-clients", 0, "how many of the clients keep a connection per endpoint")
	minMs := fs.Int("min-ms", 1000, "each request asks for /slow?ms=N, N uniform in [min-ms, max-ms]")
	maxMs := fs.Int("max-ms", 3000, "see -min-ms")
	pathTemplate := fs.String("path", "/slow?ms=%d", "request path; %d is replaced by N")
	propagation := fs.Duration("propagation", time.Second, "endpoint propagation delay")
	timeout := fs.Duration("timeout", 15*time.Second, "per request, connect included")
	maxRequests := fs.Int("max-requests", 5000, "hard bound on requests")
	maxDuration := fs.Duration("max-duration", 5*time.Minute, "hard bound on the run")
	allow := fs.String("allow", "", "comma-separated networks the endpoints must be in (the pod CIDR); loopback is always allowed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *svc == "" {
		return errors.New("load: -service is required")
	}
	if *minMs < 0 || *maxMs < *minMs {
		return fmt.Errorf("load: -min-ms %d and -max-ms %d: want 0 <= min <= max", *minMs, *maxMs)
	}
	if *ns == "" {
		b, err := os.ReadFile(saNamespaceFile)
		if err != nil {
			return fmt.Errorf("load: no -namespace and no service account namespace: %w", err)
		}
		*ns = strings.TrimSpace(string(b))
	}
	var nets []string
	if *allow != "" {
		nets = strings.Split(*allow, ",")
	}
	allowed, err := loadgen.ParsePrefixes(nets)
	if err != nil {
		return fmt.Errorf("load: -allow: %w", err)
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return loadgen.ServiceLoad{
		Namespace: *ns, Service: *svc, Propagation: *propagation,
		Load: loadgen.BalancedConfig{
			Port: *port, Clients: *clients, KeepAliveClients: *keepAlive, Timeout: *timeout,
			MaxRequests: *maxRequests, MaxDuration: *maxDuration, Allowed: allowed,
			Path: func() string {
				if !strings.Contains(*pathTemplate, "%d") {
					return *pathTemplate
				}
				return fmt.Sprintf(*pathTemplate, *minMs+rand.IntN(*maxMs-*minMs+1))
			},
		},
	}.Run(ctx, cs, loadgen.NewStreamWriter(os.Stdout))
}
