// Package policyctl is the policy controller of policy mode: it compiles the catalog (built-ins layered with
// the cluster's ShutdownProfiles) and the policy into admission policies (pkg/policy) and keeps them applied,
// and reports on each ShutdownProfile whether it is in the applied policy (condition PolicyCompiled).
//
// It is off the admission path: the API server runs the last policies applied whether the controller runs or
// not. A render is applied only when the API server accepts every object of it in a server-side dry run, so a
// profile the compiler refuses is left out (and reported), and a render the API server would reject (a CEL
// error, a cost limit) never replaces the last good one.
package policyctl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// FieldOwner is the server-side apply field manager of everything the controller writes.
const FieldOwner = "lastcall-policy-controller"

// ConditionType is the controller's condition on ShutdownProfiles. It is not the webhook's Accepted: both may
// run (a cluster moving from one mode to the other), and each writes only its own condition.
const ConditionType = "PolicyCompiled"

// Reasons of the PolicyCompiled condition.
const (
	// ReasonCompiled: the profile, at this generation, is in the applied policy.
	ReasonCompiled = "Compiled"
	// ReasonInvalid: the profile is invalid for lastcall itself (the webhook refuses it too).
	ReasonInvalid = "Invalid"
	// ReasonNotCompilable: the webhook could use the profile, but policy mode cannot express it (see the
	// message); it is left out of the policy, and pods fall back to the other profiles.
	ReasonNotCompilable = "NotCompilable"
	// ReasonRenderRejected: the API server refused the render that includes this generation of the profile;
	// the policy applied before stays in force.
	ReasonRenderRejected = "RenderRejected"
)

// Reconciler renders and applies the policies. Every event (any ShutdownProfile, drift of an applied
// object) leads to one full render: the catalog is small, and a render from the whole state needs no
// bookkeeping of what changed.
type Reconciler struct {
	Client client.Client
	Log    logr.Logger
	// Options are the compiler's options except Catalog, which comes from the cluster.
	Options policy.Options
	// Edit, when set, changes each render before it is applied. Tests use it to make a render the API server
	// rejects; it is not set in the binary.
	Edit func(*policy.Policies)
	// Renders counts renders by result (nil: not counted).
	Renders *prometheus.CounterVec
	// OwnerClusterRole, when set, names a ClusterRole that owns every object the controller applies (an
	// ownerReference): the chart sets the controller's own ClusterRole, so `helm uninstall` (or turning the
	// controller off) deletes them through the garbage collector. A cluster-scoped object can only be owned
	// by a cluster-scoped one, and this is the one the release always has next to the controller.
	OwnerClusterRole string
	// APIReader reads the owner uncached (a cached Get would watch every ClusterRole); it is the manager's
	// GetAPIReader.
	APIReader client.Reader

	// last is what the controller applied last, per object: a render equal to it, on objects nobody changed
	// since, needs no API call. Without it every apply would render and apply again (the drift watch sees the
	// controller's own changes), and the API server compiles every CEL expression of an object on each apply.
	// Reconcile runs in one worker, so it needs no lock.
	last map[string]applied
}

// applied is one object as the controller applied it: a hash of what it sent, and the generation the API
// server gave it (a change of the spec by anyone else moves the generation).
type applied struct {
	hash       string
	generation int64
}

func objectKey(u *unstructured.Unstructured) string { return u.GetKind() + "/" + u.GetName() }

func renderHash(u *unstructured.Unstructured) (string, error) {
	data, err := json.Marshal(u.Object)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// unchanged reports whether every object of the render is what the controller applied last and still has
// the generation it had then (read from the cache the drift watch keeps).
func (r *Reconciler) unchanged(ctx context.Context, objs []*unstructured.Unstructured) bool {
	for _, u := range objs {
		a, ok := r.last[objectKey(u)]
		if !ok {
			return false
		}
		if h, err := renderHash(u); err != nil || h != a.hash {
			return false
		}
		var live client.Object
		switch u.GetKind() {
		case "MutatingAdmissionPolicy":
			live = &admissionregistrationv1.MutatingAdmissionPolicy{}
		case "MutatingAdmissionPolicyBinding":
			live = &admissionregistrationv1.MutatingAdmissionPolicyBinding{}
		case "ValidatingAdmissionPolicy":
			live = &admissionregistrationv1.ValidatingAdmissionPolicy{}
		case "ValidatingAdmissionPolicyBinding":
			live = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
		default:
			return false
		}
		if err := r.Client.Get(ctx, client.ObjectKey{Name: u.GetName()}, live); err != nil || live.GetGeneration() != a.generation {
			return false
		}
	}
	return true
}

// NewRendersMetric is lastcall_policy_renders_total{result}, registered with reg when it is not nil.
func NewRendersMetric(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lastcall_policy_renders_total",
		Help: "Renders of the admission policies by the policy controller, by result: applied, unchanged (the objects already hold this render), rejected (by the API server's dry run; the last good render stays), failed (could not compile or reach the API server).",
	}, []string{"result"})
	if reg != nil {
		// A second controller in the same process (tests) counts into the first one's collector.
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					return existing
				}
			}
			panic(err)
		}
	}
	return c
}

func (r *Reconciler) count(result string) {
	if r.Renders != nil {
		r.Renders.WithLabelValues(result).Inc()
	}
}

// names are the objects the controller owns, for the drift watch and cleanup.
func (r *Reconciler) names() map[string]bool {
	n := r.name()
	out := map[string]bool{}
	for _, x := range append(append(policy.MutatingNames(n), policy.RetiredNames(n)...), policy.ValidatingNames(n)...) {
		out[x] = true
	}
	return out
}

func (r *Reconciler) name() string {
	if r.Options.Name == "" {
		return "lastcall"
	}
	return r.Options.Name
}

// renderKey is the one request of the work queue: every event means "render again".
var renderKey = reconcile.Request{NamespacedName: client.ObjectKey{Name: "render"}}

// SetupWithManager registers the controller: a render at start, on every ShutdownProfile change (spec or
// deletion; the status it writes itself is not a change), and when one of its objects is changed or deleted
// by someone else. There is no periodic resync: nothing else changes the result.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if _, err := policy.Compile(r.options(policy.Layer(nil))); err != nil {
		// The policy file itself does not compile: no ShutdownProfile can fix that.
		return fmt.Errorf("the policy does not compile with the built-in profiles: %w", err)
	}
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{renderKey}
	})
	ours := builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool { return r.names()[o.GetName()] }))
	start := make(chan event.GenericEvent, 1)
	start <- event.GenericEvent{Object: &v1alpha1.ShutdownProfile{}}
	return ctrl.NewControllerManagedBy(mgr).Named("policy").
		// A process runs one policy controller, but the tests start several in sequence, and the name check
		// is process-wide.
		WithOptions(controller.Options{SkipNameValidation: ptr(true)}).
		Watches(&v1alpha1.ShutdownProfile{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&admissionregistrationv1.MutatingAdmissionPolicy{}, all, ours).
		Watches(&admissionregistrationv1.MutatingAdmissionPolicyBinding{}, all, ours).
		Watches(&admissionregistrationv1.ValidatingAdmissionPolicy{}, all, ours).
		Watches(&admissionregistrationv1.ValidatingAdmissionPolicyBinding{}, all, ours).
		WatchesRawSource(source.Channel(start, all)).
		Complete(r)
}

func (r *Reconciler) options(l policy.Layered) policy.Options {
	o := r.Options
	l.Apply(&o)
	return o
}

// verdict is what the controller says about one ShutdownProfile.
type verdict struct {
	status          metav1.ConditionStatus
	reason, message string
}

// Reconcile renders from the whole cluster state; the request says nothing more.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	start := time.Now()
	var list v1alpha1.ShutdownProfileList
	if err := r.Client.List(ctx, &list); err != nil {
		r.count("failed")
		return ctrl.Result{}, fmt.Errorf("list ShutdownProfiles: %w", err)
	}
	items := list.Items
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	ps, verdicts, err := r.compile(items)
	if err != nil {
		r.count("failed")
		return ctrl.Result{}, err
	}
	if r.Edit != nil {
		r.Edit(ps)
	}
	objs, err := unstructuredObjects(ps)
	if err != nil {
		r.count("failed")
		return ctrl.Result{}, err
	}
	if err := r.setOwner(ctx, objs); err != nil {
		r.count("failed")
		return ctrl.Result{}, err
	}
	if r.unchanged(ctx, objs) {
		r.count("unchanged")
		return ctrl.Result{}, r.report(ctx, items, verdicts)
	}
	if err := r.apply(ctx, objs, true); err != nil {
		if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
			r.count("failed")
			return ctrl.Result{}, err
		}
		// The server refuses this render as it is: retrying cannot help, the next change renders again.
		r.count("rejected")
		r.Log.Error(err, "the API server rejects the rendered policy in a dry run; the policy applied before stays in force")
		for name, v := range verdicts {
			if v.status == metav1.ConditionTrue {
				verdicts[name] = verdict{metav1.ConditionFalse, ReasonRenderRejected,
					"the API server rejected the policy rendered with this profile (the policy applied before stays in force): " + err.Error()}
			}
		}
		return ctrl.Result{}, r.report(ctx, items, verdicts)
	}
	hashes := make([]string, len(objs))
	for i, u := range objs {
		if hashes[i], err = renderHash(u); err != nil {
			r.count("failed")
			return ctrl.Result{}, err
		}
	}
	if err := r.apply(ctx, objs, false); err != nil {
		// Some objects may be applied: forget them all, the next render applies again.
		r.last = nil
		r.count("failed")
		return ctrl.Result{}, err
	}
	// apply wrote the API server's answer into each object.
	r.last = make(map[string]applied, len(objs))
	for i, u := range objs {
		r.last[objectKey(u)] = applied{hash: hashes[i], generation: u.GetGeneration()}
	}
	// A policy this render does not have (strict mode switched off, the warnings' short way ruled out by a
	// new profile) would keep acting on pods with the old render.
	if err := r.deleteStale(ctx, ps); err != nil {
		r.count("failed")
		return ctrl.Result{}, err
	}
	r.count("applied")
	r.Log.Info("policy applied", "shutdownProfiles", len(items), "leftOut", leftOut(verdicts), "took", time.Since(start).String())
	return ctrl.Result{}, r.report(ctx, items, verdicts)
}

func leftOut(v map[string]verdict) []string {
	var out []string
	for name, x := range v {
		if x.status != metav1.ConditionTrue {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// compile renders the catalog of every ShutdownProfile that can be compiled; the others are left out
// (policy.Layer: the webhook's layering, then the compiler's per-profile problems) and get a False verdict.
func (r *Reconciler) compile(items []v1alpha1.ShutdownProfile) (*policy.Policies, map[string]verdict, error) {
	ovs := make([]profiles.Override, 0, len(items))
	for i := range items {
		ovs = append(ovs, items[i].Override())
	}
	l := policy.Layer(ovs)
	refused, problems := l.Refused, l.Problems
	verdicts := make(map[string]verdict, len(items))
	builtins := profiles.Builtins()
	for i := range items {
		n := items[i].Name
		_, builtin := builtins.Get(n)
		out := "left out of the admission policy"
		if builtin {
			out += " (pods get the built-in " + n + ")"
		} else if len(problems[n]) > 0 {
			out += " (pods that would get it, by name or by its match rules, are admitted unchanged with a warning: use the webhook for them)"
		}
		switch {
		case refused[n] != nil:
			verdicts[n] = verdict{metav1.ConditionFalse, ReasonInvalid, strings.ReplaceAll(refused[n].Error(), "\n", "; ") + ": " + out}
		case len(problems[n]) > 0:
			verdicts[n] = verdict{metav1.ConditionFalse, ReasonNotCompilable, strings.Join(problems[n], "; ") + ": " + out}
		case builtin:
			verdicts[n] = verdict{metav1.ConditionTrue, ReasonCompiled, "in the applied admission policy; overrides the built-in profile " + n}
		default:
			verdicts[n] = verdict{metav1.ConditionTrue, ReasonCompiled, "in the applied admission policy"}
		}
	}
	ps, err := policy.Compile(r.options(l))
	if err != nil {
		// policy.Layer left out what ProfileProblems knows; what is left is a compiler bug or a setting.
		return nil, nil, fmt.Errorf("compile the policy: %w", err)
	}
	return ps, verdicts, nil
}

func (r *Reconciler) setOwner(ctx context.Context, objs []*unstructured.Unstructured) error {
	if r.OwnerClusterRole == "" {
		return nil
	}
	var owner rbacv1.ClusterRole
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: r.OwnerClusterRole}, &owner); err != nil {
		return fmt.Errorf("the owner ClusterRole %s: %w", r.OwnerClusterRole, err)
	}
	ref := metav1.OwnerReference{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole", Name: owner.Name, UID: owner.UID}
	for _, u := range objs {
		u.SetOwnerReferences([]metav1.OwnerReference{ref})
	}
	return nil
}

func unstructuredObjects(ps *policy.Policies) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, o := range ps.Objects() {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, fmt.Errorf("convert %T: %w", o, err)
		}
		u := &unstructured.Unstructured{Object: m}
		// A typed object's zero creationTimestamp converts to null; apply would claim the field.
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		out = append(out, u)
	}
	return out, nil
}

// apply server-side-applies every object (policies before their bindings), taking the fields over from
// anyone who edited them: the render is the source of truth.
func (r *Reconciler) apply(ctx context.Context, objs []*unstructured.Unstructured, dryRun bool) error {
	opts := []client.ApplyOption{client.FieldOwner(FieldOwner), client.ForceOwnership}
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	for _, u := range objs {
		// The real apply writes the API server's answer into u (its generation); a dry run must not.
		target := u
		if dryRun {
			target = u.DeepCopy()
		}
		if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(target), opts...); err != nil {
			what := "apply"
			if dryRun {
				what = "dry-run apply"
			}
			return fmt.Errorf("%s %s %s: %w", what, u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

func (r *Reconciler) deleteStale(ctx context.Context, ps *policy.Policies) error {
	var objs []client.Object
	for _, n := range append(policy.MutatingNames(r.name()), policy.RetiredNames(r.name())...) {
		if !ps.Has(n) {
			objs = append(objs, &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: n}},
				&admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: n}})
		}
	}
	for _, n := range policy.ValidatingNames(r.name()) {
		if !ps.Has(n) {
			objs = append(objs, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: n}},
				&admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: n}})
		}
	}
	for _, o := range objs {
		if err := r.Client.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %T %s (not in the current render): %w", o, o.GetName(), err)
		}
	}
	return nil
}

// report writes the PolicyCompiled condition of every ShutdownProfile whose verdict changed. It applies only
// that condition (status.conditions is a map keyed by type), so the webhook's Accepted stays as it is.
func (r *Reconciler) report(ctx context.Context, items []v1alpha1.ShutdownProfile, verdicts map[string]verdict) error {
	var errs []error
	for i := range items {
		sp := &items[i]
		v, ok := verdicts[sp.Name]
		if !ok {
			continue
		}
		old := meta.FindStatusCondition(sp.Status.Conditions, ConditionType)
		if old != nil && old.Status == v.status && old.Reason == v.reason && old.Message == v.message && old.ObservedGeneration == sp.Generation {
			continue
		}
		cond := metav1.Condition{Type: ConditionType, Status: v.status, Reason: v.reason, Message: truncate(v.message), ObservedGeneration: sp.Generation, LastTransitionTime: metav1.Now()}
		if old != nil && old.Status == v.status {
			cond.LastTransitionTime = old.LastTransitionTime
		}
		cm, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&cond)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "ShutdownProfile",
			"metadata": map[string]any{"name": sp.Name},
			"status":   map[string]any{"conditions": []any{cm}},
		}}
		if err := r.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("ShutdownProfile %s: status: %w", sp.Name, err))
		}
	}
	return errors.Join(errs...)
}

// truncate keeps a message within metav1.Condition's 32768-byte limit (an API server error can quote a whole
// CEL expression).
func truncate(s string) string {
	const max = 32768
	if len(s) <= max {
		return s
	}
	return s[:max-3] + "..."
}

func ptr[T any](v T) *T { return &v }
