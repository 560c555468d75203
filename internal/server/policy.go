package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/internal/policyctl"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/version"
)

// DefaultPolicyLease is the Lease (in lastcall's namespace) that elects the rendering replica.
const DefaultPolicyLease = "lastcall-policy-controller"

func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return scheme, nil
}

// runPolicyController runs the policy controller (and the observer when o.Observe) until ctx ends. Its
// manager is leader-elected: two replicas never apply at once, and a standby takes over when the leader
// goes. Admission does not depend on it (the API server runs the policies applied last).
func runPolicyController(ctx context.Context, cfg *rest.Config, o Options, pol mutate.Policy, log logr.Logger) error {
	minor, err := serverMinor(cfg)
	switch {
	case err != nil:
		log.Error(err, "cannot read the server version; assuming a current server")
	case minor < policy.MinKubernetesMinor:
		return fmt.Errorf("policy mode needs Kubernetes >= 1.%d (admissionregistration.k8s.io/v1 MutatingAdmissionPolicy); this server is 1.%d: use the webhook", policy.MinKubernetesMinor, minor)
	}
	var selection string
	switch o.NamespaceSelection {
	case "", "optIn":
		selection = policy.SelectOptIn
	case "all":
		selection = policy.SelectAll
	default:
		return fmt.Errorf("--namespace-selector %q: want optIn or all", o.NamespaceSelection)
	}
	exclude := o.ExcludeNamespaces
	if o.Namespace != "" {
		// Like the webhook's chart: lastcall's own namespace is never served.
		exclude = append(append([]string(nil), exclude...), o.Namespace)
	}
	popts := policy.Options{
		Name: o.PolicyName, Policy: pol, Version: version.Version, NamespaceSelection: selection, ExcludeNamespaces: exclude,
		// The capabilities of the first release policy mode runs on, as `lastcall policy render` uses: the
		// controller's render and the CLI's are the same bytes for the same inputs.
		Capabilities: mutate.ResolveCapabilities(pol.Capabilities, policy.MinKubernetesMinor),
	}
	log.Info("starting the policy controller", "version", version.Version, "serverMinor", minor, "name", o.PolicyName, "namespaceSelection", selection, "excludeNamespaces", exclude)

	mgr, err := newManager(cfg, o, log, func(mopts *ctrl.Options) {
		if o.Namespace == "" {
			return
		}
		lease := o.PolicyLease
		if lease == "" {
			lease = DefaultPolicyLease
		}
		mopts.LeaderElection, mopts.LeaderElectionID, mopts.LeaderElectionNamespace = true, lease, o.Namespace
		// A rollout hands over at once instead of waiting for the Lease to expire.
		mopts.LeaderElectionReleaseOnCancel = true
	})
	if err != nil {
		return err
	}
	if o.Namespace == "" {
		log.Info("policy controller not leader-elected: no --namespace (or $POD_NAMESPACE) for its Lease; run one replica")
	}
	r := &policyctl.Reconciler{
		Client: mgr.GetClient(), Log: log.WithName("policy"), Options: popts, Edit: o.PolicyEdit, OwnerClusterRole: o.PolicyOwner, APIReader: mgr.GetAPIReader(),
		Renders: policyctl.NewRendersMetric(crmetrics.Registry),
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("policy controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready once the informers have synced and a render is in the cluster. The second condition is what makes
	// `helm install --wait` (or a GitOps health check) return only when pods are being injected, instead of
	// admitting them untouched for the seconds before the first render; a standby waits for the leader's.
	// Once any render is applied, a rollout's new pods are ready at once: the old render serves until the
	// new leader applies its own.
	if err := mgr.AddReadyzCheck("ready", func(*http.Request) error {
		if ctx.Err() != nil {
			return errors.New("shutting down")
		}
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(wctx) {
			return errors.New("informers not synced yet")
		}
		return rendered(wctx, mgr.GetClient(), o.PolicyName)
	}); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// rendered tells whether the mutating binding of a render named name is in the (cached) cluster, so the
// API server runs its mutating policy.
func rendered(ctx context.Context, c client.Reader, name string) error {
	if name == "" {
		name = policy.DefaultName
	}
	var b admissionregistrationv1.MutatingAdmissionPolicyBinding
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &b); err != nil {
		return fmt.Errorf("no render applied yet: MutatingAdmissionPolicyBinding %s: %w", name, err)
	}
	return nil
}
