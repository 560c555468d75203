// Command lastcall-webhook serves lastcall's mutating admission webhook for Pods, or, with
// --policy-controller, keeps policy mode's admission policies rendered from the cluster's ShutdownProfiles.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/lastcall-dev/lastcall/internal/observer"
	"github.com/lastcall-dev/lastcall/internal/server"
	"github.com/lastcall-dev/lastcall/pkg/version"
)

func main() {
	var o server.Options
	flag.StringVar(&o.Config, "config", "/etc/lastcall/policy.yaml", "policy file; a missing file means the default policy")
	flag.IntVar(&o.Port, "port", 9443, "webhook HTTPS port")
	flag.StringVar(&o.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with tls.crt and tls.key (reloaded on change)")
	flag.StringVar(&o.CertMode, "cert-mode", "self", "self: keep a rotating CA and serving certificate in --cert-secret and patch the caBundle; external: cert-manager or an existing Secret mounted at --cert-dir")
	flag.StringVar(&o.CertSecret, "cert-secret", "lastcall-webhook-tls", "Secret holding the certificates (self mode)")
	flag.StringVar(&o.WebhookConfig, "webhook-config", "lastcall", "MutatingWebhookConfiguration whose caBundle to patch (self mode)")
	flag.StringVar(&o.ServiceName, "service-name", "lastcall-webhook", "Service in front of the webhook (certificate DNS names)")
	flag.StringVar(&o.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "namespace of the webhook (default $POD_NAMESPACE)")
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "Prometheus metrics address (0 disables)")
	flag.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	flag.BoolVar(&o.Observe, "observe", true, "record how managed pods' containers shut down (metrics, ShutdownKilled events, /shutdowns); one replica at a time, by a Lease")
	flag.BoolVar(&o.ObserverWorkloadLabels, "observer-workload-labels", true, "label shutdown metrics with namespace and workload (false: fewer series on very large clusters)")
	flag.StringVar(&o.ObserverLease, "observer-lease", observer.DefaultLease, "Lease (in --namespace) that elects the observing replica")
	flag.BoolVar(&o.PolicyController, "policy-controller", false, "policy mode: render the admission policies from the policy file and the ShutdownProfiles and keep them applied, instead of serving the webhook (no webhook server, no certificates); one replica at a time, by a Lease")
	flag.StringVar(&o.PolicyLease, "policy-lease", server.DefaultPolicyLease, "Lease (in --namespace) that elects the rendering replica (--policy-controller)")
	flag.StringVar(&o.PolicyName, "policy-name", "lastcall", "name of the admission policies and bindings (--policy-controller)")
	flag.StringVar(&o.NamespaceSelection, "namespace-selector", "optIn", "namespaces the policies serve (--policy-controller): optIn (labelled lastcall.dev/inject=enabled) or all (all but those labelled disabled), as lastcall policy render")
	flag.StringVar(&o.PolicyOwner, "policy-owner-cluster-role", "", "a ClusterRole that owns the applied policies and bindings, so deleting it (helm uninstall) deletes them (--policy-controller; empty: no owner)")
	excluded := flag.String("exclude-namespaces", "", "comma-separated namespaces the policies never serve, besides kube-system, kube-public, kube-node-lease and --namespace (--policy-controller)")
	flag.StringVar(&o.LogFormat, "log-format", "json", "json or console")
	flag.StringVar(&o.LogLevel, "log-level", "info", "info or debug")
	flag.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "after SIGTERM, how long admissions in flight may finish (negative: stop at once)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Version)
		return
	}
	for _, n := range strings.Split(*excluded, ",") {
		if n = strings.TrimSpace(n); n != "" {
			o.ExcludeNamespaces = append(o.ExcludeNamespaces, n)
		}
	}
	log, err := server.NewLogger(o.LogFormat, o.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lastcall-webhook:", err)
		os.Exit(2)
	}
	ctrl.SetLogger(log)
	// client-go (reflectors, the observer's leader election) logs through klog: the same JSON lines.
	klog.SetLogger(log.WithName("client-go"))
	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "no kubeconfig")
		os.Exit(1)
	}
	if err := server.Run(ctrl.SetupSignalHandler(), cfg, o, log); err != nil {
		log.Error(err, "lastcall-webhook failed")
		os.Exit(1)
	}
}
