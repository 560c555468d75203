// Package server wires the webhook binary: manager, webhook server, informers, certificates, probes.
// It is separate from main so the integration tests run exactly what the binary runs.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/internal/certs"
	"github.com/lastcall-dev/lastcall/internal/controller"
	"github.com/lastcall-dev/lastcall/internal/namespaces"
	"github.com/lastcall-dev/lastcall/internal/observer"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/version"
	"github.com/lastcall-dev/lastcall/pkg/webhook"
)

// Options are the binary's flags.
type Options struct {
	Config, CertDir, CertMode, CertSecret, WebhookConfig, ServiceName, Namespace string
	MetricsAddr, ProbeAddr, LogFormat, LogLevel                                  string
	Port                                                                         int
	// ExtraDNSNames are added to the serving certificate (self mode), e.g. "localhost" in tests.
	ExtraDNSNames []string
	// Observe runs the shutdown observer (leader-elected through the Lease ObserverLease in Namespace);
	// ObserverWorkloadLabels false drops the namespace and workload labels of its metrics.
	Observe, ObserverWorkloadLabels bool
	ObserverLease                   string
	// ServerCertValidity, RenewBefore and RotationCheck tune self-managed rotation; zero means
	// cert-controller's defaults (10 years, renewed 90 days before expiry, checked every 12 hours). Tests
	// shorten them to force rotations.
	ServerCertValidity, RenewBefore, RotationCheck time.Duration
	// PolicyController runs the policy controller of policy mode (internal/policyctl) instead of the webhook:
	// no webhook server, no certificates, no namespace index. It is leader-elected through the Lease
	// PolicyLease in Namespace; the observer can run next to it.
	PolicyController bool
	PolicyLease      string
	// PolicyName names the policies and bindings (the chart's release name); NamespaceSelection is optIn
	// (the default) or all, as the chart's webhook.namespaceSelector.mode; ExcludeNamespaces are never served
	// (Namespace is added).
	PolicyName, NamespaceSelection string
	ExcludeNamespaces              []string
	// PolicyOwner is a ClusterRole that owns the applied objects (policyctl.Reconciler.OwnerClusterRole).
	PolicyOwner string
	// PolicyEdit changes each render before it is applied; tests use it to make a render the API server
	// rejects. The binary never sets it.
	PolicyEdit func(*policy.Policies)
	// ShutdownTimeout bounds how long in-flight admissions may finish after SIGTERM (the manager's graceful
	// shutdown); zero means controller-runtime's default (30 s), negative means no graceful shutdown.
	ShutdownTimeout time.Duration
}

// NewLogger builds the zap-backed logr logger.
func NewLogger(format, level string) (logr.Logger, error) {
	cfg := zap.NewProductionConfig()
	switch format {
	case "json":
	case "console":
		cfg = zap.NewDevelopmentConfig()
	default:
		return logr.Discard(), fmt.Errorf("--log-format %q: want json or console", format)
	}
	switch level {
	case "info":
		cfg.Level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
	case "debug":
		cfg.Level = zap.NewAtomicLevelAt(zapcore.DebugLevel)
	default:
		return logr.Discard(), fmt.Errorf("--log-level %q: want info or debug", level)
	}
	cfg.DisableStacktrace = true
	z, err := cfg.Build()
	if err != nil {
		return logr.Discard(), fmt.Errorf("build logger: %w", err)
	}
	return zapr.NewLogger(z), nil
}

func loadPolicy(path string, log logr.Logger) (mutate.Policy, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		log.Info("no policy file; using the default policy", "path", path)
		return mutate.DefaultPolicy(), nil
	}
	if err != nil {
		return mutate.Policy{}, fmt.Errorf("read policy: %w", err)
	}
	p, err := mutate.ParsePolicy(data)
	if err != nil {
		return mutate.Policy{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Run serves until ctx ends. cfg is the API server to talk to.
func Run(ctx context.Context, cfg *rest.Config, o Options, log logr.Logger) error {
	pol, err := loadPolicy(o.Config, log)
	if err != nil {
		return err
	}
	if o.PolicyController {
		return runPolicyController(ctx, cfg, o, pol, log)
	}
	if o.CertMode != "self" && o.CertMode != "external" {
		return fmt.Errorf("--cert-mode %q: want self or external", o.CertMode)
	}
	if o.CertMode == "self" && o.Namespace == "" {
		return errors.New("--namespace (or $POD_NAMESPACE) is required with --cert-mode self")
	}
	minor, err := serverMinor(cfg)
	if err != nil {
		log.Error(err, "cannot read the server version; assuming a current server")
	}
	caps := mutate.ResolveCapabilities(pol.Capabilities, minor)
	log.Info("starting", "version", version.Version, "serverMinor", minor, "preStopSleep", caps.PreStopSleep, "stopSignal", caps.StopSignal, "certMode", o.CertMode)

	mgr, err := newManager(cfg, o, log, nil)
	if err != nil {
		return err
	}

	profilesR := controller.NewProfileReconciler(mgr.GetClient(), log.WithName("profiles"))
	if err := ctrl.NewControllerManagedBy(mgr).Named("shutdownprofiles").For(&v1alpha1.ShutdownProfile{}).Complete(profilesR); err != nil {
		return fmt.Errorf("ShutdownProfile controller: %w", err)
	}
	// Namespaces are not in the manager's cache: an informer would keep an object per namespace, and the
	// webhook needs only each namespace's lastcall keys (see namespaces.Index).
	mc, err := metadata.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return fmt.Errorf("metadata client: %w", err)
	}
	nsIndex := namespaces.NewIndex(namespaces.ListWatch(mc))
	if err := mgr.Add(nsIndex); err != nil {
		return fmt.Errorf("namespace index: %w", err)
	}

	handler := &webhook.Handler{
		Engine:     mutate.New(mutate.Options{Policy: pol, Capabilities: caps, Version: version.Version}),
		Namespaces: nsIndex,
		Profiles:   profilesR,
		Log:        log.WithName("admission"),
		Metrics:    webhook.NewMetrics(crmetrics.Registry),
	}
	whs := crwebhook.NewServer(crwebhook.Options{
		Port: o.Port, CertDir: o.CertDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }},
	})
	whs.Register(webhook.Path, &crwebhook.Admission{Handler: handler})
	// The server waits for the namespace index as it waits for the certificates: admission with an empty
	// index would ignore every namespace's labels and annotations.
	if err := mgr.Add(&afterCerts{dir: o.CertDir, server: whs, ready: nsIndex.HasSynced}); err != nil {
		return err
	}

	certsReady := make(chan struct{})
	if o.CertMode == "self" {
		if err := os.MkdirAll(o.CertDir, 0o700); err != nil {
			return fmt.Errorf("cert dir: %w", err)
		}
		key := types.NamespacedName{Namespace: o.Namespace, Name: o.CertSecret}
		direct, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme()})
		if err != nil {
			return err
		}
		if err := certs.EnsureSecret(ctx, direct, key); err != nil {
			return err
		}
		svc := o.ServiceName + "." + o.Namespace + ".svc"
		if err := rotator.AddRotator(mgr, &rotator.CertRotator{
			SecretKey: key, CertDir: o.CertDir,
			CAName: "lastcall-ca", CAOrganization: "lastcall",
			DNSName: svc, ExtraDNSNames: append([]string{o.ServiceName, o.ServiceName + "." + o.Namespace, svc + ".cluster.local"}, o.ExtraDNSNames...),
			ServerCertDuration: o.ServerCertValidity, LookaheadInterval: o.RenewBefore, RotationCheckFrequency: o.RotationCheck,
			IsReady:  certsReady,
			Webhooks: []rotator.WebhookInfo{{Name: o.WebhookConfig, Type: rotator.Mutating}},
		}); err != nil {
			return fmt.Errorf("certificate rotator: %w", err)
		}
		if err := mgr.Add(&certs.SecretFiles{Reader: direct, Key: key, Dir: o.CertDir, Log: log.WithName("certs")}); err != nil {
			return err
		}
	} else {
		close(certsReady)
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	started := whs.StartedChecker()
	if err := mgr.AddReadyzCheck("ready", func(r *http.Request) error {
		// Not ready once shutdown has started: the probe server is the last thing the manager stops, so it
		// says so while the webhook server drains.
		if ctx.Err() != nil {
			return errors.New("shutting down")
		}
		select {
		case <-certsReady:
		default:
			return errors.New("certificates not ready")
		}
		if _, err := os.Stat(filepath.Join(o.CertDir, corev1.TLSCertKey)); err != nil {
			return fmt.Errorf("no serving certificate yet: %w", err)
		}
		if !nsIndex.HasSynced() {
			return errors.New("namespaces not loaded yet")
		}
		if !profilesR.Synced() && !noProfiles(mgr) {
			return errors.New("ShutdownProfiles not loaded yet")
		}
		return started(r)
	}); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// gracefulShutdown is the manager's GracefulShutdownTimeout for --shutdown-timeout: zero is
// controller-runtime's default, negative none.
// newManager is the manager both modes of the binary run: lastcall's scheme, metrics and probes, the
// graceful shutdown (on SIGTERM the webhook server stops accepting connections and waits for the admissions
// in flight; the manager gives it this long), and the shutdown observer when it is on. The observer is built
// before the manager: its summaries are served next to /metrics. edit adjusts the options (leader election).
func newManager(cfg *rest.Config, o Options, log logr.Logger, edit func(*ctrl.Options)) (manager.Manager, error) {
	scheme, err := newScheme()
	if err != nil {
		return nil, err
	}
	obs, extra, err := newObserver(cfg, o, log)
	if err != nil {
		return nil, err
	}
	mopts := ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr, ExtraHandlers: extra},
		HealthProbeBindAddress:  o.ProbeAddr,
		GracefulShutdownTimeout: gracefulShutdown(o.ShutdownTimeout),
	}
	if edit != nil {
		edit(&mopts)
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	if obs != nil {
		if err := mgr.Add(obs); err != nil {
			return nil, fmt.Errorf("observer: %w", err)
		}
	}
	return mgr, nil
}

func gracefulShutdown(d time.Duration) *time.Duration {
	switch {
	case d > 0:
		return &d
	case d < 0:
		return new(time.Duration(0))
	}
	return nil
}

// newObserver builds the shutdown observer when o.Observe is set. It has its own leader election (see
// observer.Elected): the manager runs without one, so every replica keeps serving admission whatever happens
// to the Lease.
func newObserver(cfg *rest.Config, o Options, log logr.Logger) (*observer.Elected, map[string]http.Handler, error) {
	if !o.Observe {
		return nil, nil, nil
	}
	if o.Namespace == "" {
		// Outside a cluster (a developer's run): the Lease has nowhere to live. In a pod the chart sets
		// POD_NAMESPACE, so this does not happen there.
		log.Info("shutdown observer off: no --namespace (or $POD_NAMESPACE) for its Lease")
		return nil, nil, nil
	}
	lease := o.ObserverLease
	if lease == "" {
		lease = observer.DefaultLease
	}
	e, err := observer.NewForConfig(cfg, observer.Election{Namespace: o.Namespace, Name: lease},
		observer.Options{Registerer: crmetrics.Registry, WorkloadLabels: o.ObserverWorkloadLabels, Log: log.WithName("observer")})
	if err != nil {
		return nil, nil, err
	}
	return e, map[string]http.Handler{ShutdownsPath: e.Observer}, nil
}

// ShutdownsPath serves the observer's per-workload summaries (JSON) on the metrics port.
const ShutdownsPath = "/shutdowns"

// noProfiles is true once the cache has synced and holds no ShutdownProfile: the reconciler never runs then,
// and the built-in catalog is the right one.
func noProfiles(mgr ctrl.Manager) bool {
	var list v1alpha1.ShutdownProfileList
	if err := mgr.GetCache().List(context.Background(), &list); err != nil {
		return false
	}
	return len(list.Items) == 0
}

func serverMinor(cfg *rest.Config) (int, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return 0, err
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return 0, fmt.Errorf("server version: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	if err != nil {
		return 0, fmt.Errorf("server minor version %q: %w", v.Minor, err)
	}
	return n, nil
}

// afterCerts starts the webhook server once its certificate files exist and ready reports true: in self mode
// the rotator writes the files after the manager has started, and the server refuses to start without them.
type afterCerts struct {
	dir    string
	server crwebhook.Server
	ready  func() bool
}

func (a *afterCerts) Start(ctx context.Context) error {
	for {
		_, errC := os.Stat(filepath.Join(a.dir, corev1.TLSCertKey))
		_, errK := os.Stat(filepath.Join(a.dir, corev1.TLSPrivateKeyKey))
		if errC == nil && errK == nil && a.ready() {
			return a.server.Start(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// NeedLeaderElection: every replica serves.
func (a *afterCerts) NeedLeaderElection() bool { return false }
