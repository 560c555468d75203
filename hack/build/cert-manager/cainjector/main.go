// Command cainjector runs cert-manager's CA injector: it copies a Certificate's CA into the caBundle of
// webhook configurations, APIServices and CRDs annotated with cert-manager.io/inject-ca-from.
//
// cert-manager's own command packages are separate Go modules that the module proxy does not serve; this is a
// small main over the injector controllers of the published module. It takes the flags cert-manager's Helm
// chart passes (logging, leader election, namespace); metrics, pprof and configuration files are not wired.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	cliflag "k8s.io/component-base/cli/flag"
	apireg "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	config "github.com/cert-manager/cert-manager/internal/apis/config/cainjector"
	configscheme "github.com/cert-manager/cert-manager/internal/apis/config/cainjector/scheme"
	configv1alpha1 "github.com/cert-manager/cert-manager/pkg/apis/config/cainjector/v1alpha1"
	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"
)

func main() {
	logf.InitLogs()
	defer logf.FlushLogs()
	// controller-runtime and client-go log through cert-manager's logger, as in the upstream binaries.
	ctrl.SetLogger(logf.Log)
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager cainjector:", err)
		os.Exit(1)
	}
}

func defaults() (*config.CAInjectorConfiguration, error) {
	s, _, err := configscheme.NewSchemeAndCodecs()
	if err != nil {
		return nil, err
	}
	v := &configv1alpha1.CAInjectorConfiguration{}
	s.Default(v)
	c := &config.CAInjectorConfiguration{}
	if err := s.Convert(v, c, nil); err != nil {
		return nil, err
	}
	return c, nil
}

func run() error {
	o, err := defaults()
	if err != nil {
		return fmt.Errorf("default configuration: %w", err)
	}
	fs := pflag.NewFlagSet("cainjector", pflag.ContinueOnError)
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "only watch this namespace (empty: all)")
	fs.BoolVar(&o.LeaderElectionConfig.Enabled, "leader-elect", o.LeaderElectionConfig.Enabled, "leader election between replicas")
	fs.StringVar(&o.LeaderElectionConfig.Namespace, "leader-election-namespace", o.LeaderElectionConfig.Namespace, "namespace of the leader election lease")
	fs.DurationVar(&o.LeaderElectionConfig.LeaseDuration, "leader-election-lease-duration", o.LeaderElectionConfig.LeaseDuration, "lease duration")
	fs.DurationVar(&o.LeaderElectionConfig.RenewDeadline, "leader-election-renew-deadline", o.LeaderElectionConfig.RenewDeadline, "renew deadline")
	fs.DurationVar(&o.LeaderElectionConfig.RetryPeriod, "leader-election-retry-period", o.LeaderElectionConfig.RetryPeriod, "retry period")
	fs.Var(cliflag.NewMapStringBool(&o.FeatureGates), "feature-gates", "feature gates (A=true,B=false)")
	logf.AddFlags(&o.Logging, fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(o.FeatureGates); err != nil {
		return fmt.Errorf("--feature-gates: %w", err)
	}
	if err := logf.ValidateAndApply(&o.Logging); err != nil {
		return fmt.Errorf("logging flags: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	log := logf.FromContext(ctx, "cainjector")

	scheme := runtime.NewScheme()
	utilruntime.Must(kscheme.AddToScheme(scheme))
	utilruntime.Must(cmscheme.AddToScheme(scheme))
	utilruntime.Must(apiext.AddToScheme(scheme))
	utilruntime.Must(apireg.AddToScheme(scheme))
	var namespaces map[string]cache.Config
	if o.Namespace != "" {
		namespaces = map[string]cache.Config{o.Namespace: {}}
	}
	// The user agent is also the field manager of the server-side apply that injects the CA: it must be set.
	mgr, err := ctrl.NewManager(util.RestConfigWithUserAgent(ctrl.GetConfigOrDie(), "cainjector"), ctrl.Options{
		Scheme: scheme,
		Cache:  cache.Options{ReaderFailOnMissingInformer: true, DefaultNamespaces: namespaces},
		// Secrets are read directly: caching every Secret of the cluster costs memory for the few it needs.
		Client:                        client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		LeaderElection:                o.LeaderElectionConfig.Enabled,
		LeaderElectionNamespace:       o.LeaderElectionConfig.Namespace,
		LeaderElectionID:              "cert-manager-cainjector-leader-election",
		LeaderElectionReleaseOnCancel: true,
		LeaderElectionResourceLock:    resourcelock.LeasesResourceLock,
		LeaseDuration:                 &o.LeaderElectionConfig.LeaseDuration,
		RenewDeadline:                 &o.LeaderElectionConfig.RenewDeadline,
		RetryPeriod:                   &o.LeaderElectionConfig.RetryPeriod,
		GracefulShutdownTimeout:       new(5 * time.Second),
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if err := cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		Namespace:                    o.Namespace,
		IgnoreNamespaces:             o.IgnoreNamespaces,
		EnableCertificatesDataSource: o.EnableDataSourceConfig.Certificates,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   o.EnableInjectableConfig.MutatingWebhookConfigurations,
			cainjector.ValidatingWebhookConfigurationName: o.EnableInjectableConfig.ValidatingWebhookConfigurations,
			cainjector.APIServiceName:                     o.EnableInjectableConfig.APIServices,
			cainjector.CustomResourceDefinitionName:       o.EnableInjectableConfig.CustomResourceDefinitions,
		},
	}); err != nil {
		return fmt.Errorf("register injectors: %w", err)
	}
	log.Info("starting cainjector", "namespace", o.Namespace, "leaderElection", o.LeaderElectionConfig.Enabled)
	return mgr.Start(ctx)
}
