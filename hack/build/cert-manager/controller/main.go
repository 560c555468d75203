// Command controller runs cert-manager's certificate controllers with the CA and self-signed issuers.
//
// cert-manager's own command packages are separate Go modules that the module proxy does not serve, and its
// Venafi dependency is not served either; this is a small main over the controllers of the published module
// that issue and renew Certificates from Issuers and ClusterIssuers of type CA and SelfSigned, which is what a
// webhook's serving certificate needs. ACME, Vault and Venafi issuers, the ingress and Gateway shims, metrics
// and leader election are not built: run one replica (the chart's default). Flags the chart passes for parts
// that are not built are accepted and logged as ignored.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	logsapi "k8s.io/component-base/logs/api/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/healthz"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// Each package registers its controller with controller.Register.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The issuer implementations the issuers controllers set up.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

func main() {
	logf.InitLogs()
	defer logf.FlushLogs()
	// controller-runtime and client-go log through cert-manager's logger, as in the upstream binaries.
	ctrl.SetLogger(logf.Log)
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager controller:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		logging   = logsapi.NewLoggingConfiguration()
		opts      = controller.ContextOptions{KubernetesAPIQPS: 20, KubernetesAPIBurst: 50}
		healthz   = ":9403"
		workers   = 5
		ignored   []string
		fs        = pflag.NewFlagSet("controller", pflag.ContinueOnError)
		ignoreStr = func(name string) { fs.String(name, "", "accepted for the chart; not built here") }
	)
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig (empty: in-cluster)")
	fs.StringVar(&opts.APIServerHost, "master", "", "API server address (empty: from the kubeconfig)")
	fs.StringVar(&opts.Namespace, "namespace", "", "only this namespace (empty: all; ClusterIssuers need all)")
	fs.StringVar(&opts.ClusterResourceNamespace, "cluster-resource-namespace", "kube-system", "namespace of the Secrets ClusterIssuers reference")
	fs.BoolVar(&opts.EnableOwnerRef, "enable-certificate-owner-ref", false, "make Certificates own their Secrets")
	fs.StringVar(&healthz, "healthz-listen-address", healthz, "address of /livez")
	fs.IntVar(&workers, "concurrent-workers", workers, "workers per controller")
	for _, n := range []string{"leader-election-namespace", "leader-election-lease-duration", "leader-election-renew-deadline",
		"leader-election-retry-period", "acme-http01-solver-image", "max-concurrent-challenges", "default-issuer-name",
		"default-issuer-kind", "default-issuer-group", "feature-gates", "acme-http01-solver-extra-labels"} {
		ignoreStr(n)
	}
	logf.AddFlags(logging, fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	fs.Visit(func(f *pflag.Flag) {
		if f.Usage == "accepted for the chart; not built here" {
			ignored = append(ignored, "--"+f.Name+"="+f.Value.String())
		}
	})
	if err := logf.ValidateAndApply(logging); err != nil {
		return fmt.Errorf("logging flags: %w", err)
	}
	// Renewal backoff of a failed CertificateRequest: cert-manager's defaults.
	opts.CertificateRequestMinimumBackoffDuration = time.Hour
	opts.CertificateRequestMaximumBackoffDuration = 32 * time.Hour

	ctx := ctrl.SetupSignalHandler()
	log := logf.FromContext(ctx, "controller")
	if len(ignored) > 0 {
		log.Info("flags for parts this build does not include are ignored", "flags", ignored)
	}
	factory, err := controller.NewContextFactory(ctx, opts)
	if err != nil {
		return fmt.Errorf("controller context: %w", err)
	}
	cctx, err := factory.Build()
	if err != nil {
		return fmt.Errorf("controller context: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	ln, err := (&net.ListenConfig{}).Listen(gctx, "tcp", healthz)
	if err != nil {
		return fmt.Errorf("--healthz-listen-address %q: %w", healthz, err)
	}
	hs := healthzServer()
	g.Go(func() error { return hs.Start(gctx, ln) })

	known := controller.Known()
	names := make([]string, 0, len(known))
	for n := range known {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c, err := known[n](factory)
		if err != nil {
			return fmt.Errorf("controller %s: %w", n, err)
		}
		g.Go(func() error { return c.Run(workers, gctx) })
	}
	log.Info("starting cert-manager controllers", "controllers", names)
	cctx.SharedInformerFactory.Start(gctx.Done())
	cctx.KubeSharedInformerFactory.Start(gctx.Done())
	cctx.HTTP01ResourceMetadataInformersFactory.Start(gctx.Done())
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	cctx.HTTP01ResourceMetadataInformersFactory.Shutdown()
	cctx.KubeSharedInformerFactory.Shutdown()
	cctx.SharedInformerFactory.Shutdown()
	return nil
}

// healthzServer serves /livez. Without leader election there is no lease to watch, so it reports the process
// alive while it serves.
func healthzServer() *healthz.Server { return healthz.NewServer(20 * time.Second) }
