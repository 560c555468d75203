// Command crirm stops and removes every pod sandbox (and so every container and its CNI network) through the
// CRI. hack/cluster/local.sh runs it after the kubelet stopped and before containerd stops, so that no
// container, network namespace or shim survives the cluster.
//
// Usage: crirm [-timeout 60s] unix:///path/to/containerd.sock
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rt "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	timeout := flag.Duration("timeout", 60*time.Second, "overall deadline")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: crirm [-timeout D] unix:///path/to/containerd.sock")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "crirm:", err)
		os.Exit(1)
	}
}

func run(endpoint string, timeout time.Duration) error {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := rt.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := c.ListPodSandbox(ctx, &rt.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list sandboxes: %w", err)
	}
	var failed int
	for _, p := range resp.Items {
		id := p.Id
		if len(id) > 12 {
			id = id[:12]
		}
		if _, err := c.StopPodSandbox(ctx, &rt.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "stop %s: %v\n", id, err)
			failed++
		}
		if _, err := c.RemovePodSandbox(ctx, &rt.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "remove %s: %v\n", id, err)
			failed++
			continue
		}
		fmt.Printf("removed sandbox %s (%s/%s)\n", id, p.GetMetadata().GetNamespace(), p.GetMetadata().GetName())
	}
	if failed > 0 {
		return fmt.Errorf("%d operations failed", failed)
	}
	return nil
}
