package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/internal/policyctl"
	"github.com/lastcall-dev/lastcall/internal/server"
	"github.com/lastcall-dev/lastcall/internal/testenv"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
	"github.com/lastcall-dev/lastcall/pkg/version"
)

// The policy controller, run as the binary runs it (--policy-controller, leader-elected through a Lease),
// renders the built-ins at start, follows ShutdownProfiles without restarting anything, puts back what someone
// else edits or deletes (drift), leaves out (and reports) a profile the compiler refuses, never applies a
// render the API server rejects, and when it stops admission goes on with the last render. The steps share one controller and build on each other.
func TestPolicyController(t *testing.T) {
	const (
		name   = "ctl"        // the policies' name (other tests own "lastcall" and "lc-*")
		served = "ctl-served" // a namespace the policies serve (opt-in)
		home   = "ctl-system" // the controller's namespace (its Lease; never served)
	)
	ctx := context.Background()
	log := testLog(t)
	namespace(t, served, map[string]string{mutate.LabelInject: "enabled"}, nil)
	namespace(t, home, map[string]string{mutate.LabelInject: "enabled"}, nil)
	t.Cleanup(func() { cleanupController(t, name) })

	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte("defaultProfile: http\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// breakWarnings makes the next renders' second object (the warnings policy) one the API server refuses:
	// without the dry run of the whole set, the first object (the mutating policy) would be applied before
	// the error, and pods would get the new render.
	var breakWarnings, slowFirst atomic.Bool
	slowFirst.Store(true)
	probe, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	appliedBefore := renders(t, "applied")
	ctlCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctlCtx, cfg, server.Options{
			Config: policyFile, PolicyController: true, PolicyName: name, Namespace: home,
			MetricsAddr: "0", ProbeAddr: probe,
			PolicyEdit: func(ps *policy.Policies) {
				// The first render takes a while, so a readiness that only waits for the informers answers
				// before anything is applied.
				if slowFirst.CompareAndSwap(true, false) {
					time.Sleep(2 * time.Second)
				}
				if breakWarnings.Load() {
					ps.Validating[0].Spec.Validations[0].Expression = "size(variables.warnings) <= "
				}
			},
		}, log)
	}()
	stopped := false
	stopController := func() {
		if !stopped {
			stopped = true
			stop()
			waitStopped(t, done)
		}
	}
	t.Cleanup(stopController)
	if err := testenv.WaitReady(probe, done, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	// Ready means a render is applied (helm install --wait returns only then), read past any cache.
	for _, n := range policy.MutatingNames(name) {
		if err := k8s.Get(ctx, client.ObjectKey{Name: n}, &admissionregistrationv1.MutatingAdmissionPolicyBinding{}); err != nil {
			t.Fatalf("ready before its first render was applied: %v", err)
		}
	}

	pod := func(image string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: served},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
	}
	// injectedAs waits until a pod of image gets the record want and, unless grace is 0, that grace period
	// (within 30 s: the API server loads policies asynchronously) and returns it.
	injectedAs := func(t *testing.T, image, want string, grace int64) *corev1.Pod {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, _, err := create(pod(image), true)
			g := int64(-1)
			if got.Spec.TerminationGracePeriodSeconds != nil {
				g = *got.Spec.TerminationGracePeriodSeconds
			}
			if err == nil && got.Annotations[mutate.AnnotationInjected] == want && (grace == 0 || g == grace) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("a pod of %s: record %q grace %d (err %v) after 30s, want %q grace %d", image, got.Annotations[mutate.AnnotationInjected], g, err, want, grace)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	condition := func(t *testing.T, profile string, ok func(*metav1.Condition, *v1alpha1.ShutdownProfile) bool) *metav1.Condition {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var sp v1alpha1.ShutdownProfile
			if err := k8s.Get(ctx, client.ObjectKey{Name: profile}, &sp); err != nil {
				t.Fatal(err)
			}
			c := meta.FindStatusCondition(sp.Status.Conditions, policyctl.ConditionType)
			if c != nil && ok(c, &sp) {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("ShutdownProfile %s: condition %s is %+v after 30s", profile, policyctl.ConditionType, c)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	opts := policy.Options{Name: name, Policy: mutate.DefaultPolicy(), Version: version.Version, ExcludeNamespaces: []string{home},
		Capabilities: mutate.ResolveCapabilities(mutate.DefaultPolicy().Capabilities, policy.MinKubernetesMinor)}

	// appliedIs checks that the mutating policy on the server is what the compiler makes of items (the
	// ShutdownProfiles the controller should have rendered), field for field.
	appliedIs := func(t *testing.T, items ...v1alpha1.ShutdownProfile) {
		t.Helper()
		o := opts
		o.Catalog, _ = v1alpha1.Catalog(items)
		// The controller also names the cluster's profiles it could not compile, so their pods fall back.
		var all v1alpha1.ShutdownProfileList
		if err := k8s.List(ctx, &all); err != nil {
			t.Fatal(err)
		}
		var ovs []profiles.Override
		for i := range all.Items {
			ovs = append(ovs, all.Items[i].Override())
		}
		cat := o.Catalog
		policy.Layer(ovs).Apply(&o)
		o.Catalog = cat
		want, err := policy.Compile(o)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want.Mutating {
			var got admissionregistrationv1.MutatingAdmissionPolicy
			if err := k8s.Get(ctx, client.ObjectKey{Name: w.Name}, &got); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(w.Spec.Mutations, got.Spec.Mutations); d != "" {
				t.Errorf("%s: applied mutation differs from the compiler's (-want +got):\n%s", w.Name, d)
			}
			if d := cmp.Diff(w.Spec.Variables, got.Spec.Variables); d != "" {
				t.Errorf("%s: applied variables differ from the compiler's (-want +got):\n%s", w.Name, d)
			}
		}
	}

	t.Run("the built-ins are rendered at start", func(t *testing.T) {
		injectedAs(t, "nginx:1.27", "app=nginx", 32)
		// Applied once: the render its own applies trigger (the drift watch sees them) finds the objects as it
		// left them and makes no API call.
		deadline := time.Now().Add(15 * time.Second)
		for renders(t, "unchanged") == 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if a, u := renders(t, "applied")-appliedBefore, renders(t, "unchanged"); a != 1 || u == 0 {
			t.Errorf("renders at start: %v applied, %v unchanged; want 1 applied, the follow-up unchanged", a, u)
		}
		injectedAs(t, "example.com/acme-server:1", "app=http", 32)
		// What is applied is what `lastcall policy render` compiles for the same inputs, owned by the
		// controller's field manager.
		appliedIs(t)
		var got admissionregistrationv1.MutatingAdmissionPolicy
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &got); err != nil {
			t.Fatal(err)
		}
		if m := got.ManagedFields; len(m) != 1 || m[0].Manager != policyctl.FieldOwner || m[0].Operation != metav1.ManagedFieldsOperationApply {
			t.Errorf("managed fields %+v: want one apply by %s", m, policyctl.FieldOwner)
		}
		// The controller's own namespace is never served, even when labelled.
		p := pod("nginx:1.27")
		p.Namespace = home
		if got, _, err := create(p, true); err != nil || got.Annotations[mutate.AnnotationInjected] != "" {
			t.Errorf("a pod in %s: record %q (%v); want none", home, got.Annotations[mutate.AnnotationInjected], err)
		}
	})

	t.Run("a new ShutdownProfile applies to the next pod", func(t *testing.T) {
		delay, timeout := metav1.Duration{Duration: 2 * time.Second}, metav1.Duration{Duration: 40 * time.Second}
		sp := &v1alpha1.ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.ShutdownProfileSpec{
			StopSignal: "SIGQUIT", DrainDelay: &delay, DrainTimeout: &timeout, Match: &v1alpha1.ProfileMatch{Images: []string{"acme-server"}}}}
		start := time.Now()
		if err := k8s.Create(ctx, sp); err != nil {
			t.Fatal(err)
		}
		injectedAs(t, "example.com/acme-server:1", "app=acme", 44) // 2s + 40s + 2s
		injected := time.Since(start)
		c := condition(t, "acme", func(c *metav1.Condition, sp *v1alpha1.ShutdownProfile) bool {
			return c.ObservedGeneration == sp.Generation
		})
		// The API server reloads policies on its own schedule: most of this is its, not the controller's.
		t.Logf("ShutdownProfile created -> next pod injected with it: %s", injected.Round(time.Millisecond))
		if c.Status != metav1.ConditionTrue || c.Reason != policyctl.ReasonCompiled {
			t.Errorf("acme: %+v, want True/%s", c, policyctl.ReasonCompiled)
		}
	})

	t.Run("a profile the compiler refuses is left out and reported, the others stay", func(t *testing.T) {
		// 1500us is a valid ShutdownProfile (the webhook uses it), but policy mode renders milliseconds.
		delay := metav1.Duration{Duration: 1500 * time.Microsecond}
		sp := &v1alpha1.ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "fine-grained"}, Spec: v1alpha1.ShutdownProfileSpec{
			StopSignal: "SIGTERM", DrainDelay: &delay, Match: &v1alpha1.ProfileMatch{Images: []string{"fine-grained"}}}}
		// The baseline: with it, the whole catalog does not compile.
		withIt, errs := v1alpha1.Catalog([]v1alpha1.ShutdownProfile{*sp})
		if len(errs) > 0 {
			t.Fatalf("the webhook refuses the profile too (%v): not a case for this test", errs)
		}
		o := opts
		o.Catalog = withIt
		if _, err := policy.Compile(o); err == nil {
			t.Fatal("the compiler accepts a 1500us drainDelay: find another profile it refuses")
		}
		if err := k8s.Create(ctx, sp); err != nil {
			t.Fatal(err)
		}
		c := condition(t, "fine-grained", func(c *metav1.Condition, _ *v1alpha1.ShutdownProfile) bool { return true })
		if c.Status != metav1.ConditionFalse || c.Reason != policyctl.ReasonNotCompilable || !strings.Contains(c.Message, "drainDelay 1.5ms") || !strings.Contains(c.Message, "millisecond") {
			t.Errorf("fine-grained: %+v; want False/%s naming drainDelay 1.5ms", c, policyctl.ReasonNotCompilable)
		}
		injectedAs(t, "example.com/acme-server:1", "app=acme", 44)
		// A pod it would detect falls back (the webhook would give it fine-grained): unchanged, and why.
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, warnings, err := create(pod("example.com/fine-grained:1"), true)
			if err == nil && got.Annotations[mutate.AnnotationInjected] == "" && len(warnings) == 1 && strings.Contains(warnings[0], "policy mode could not compile") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a pod of example.com/fine-grained:1 after 30s: record %q, warnings %q, err %v; want it unchanged with the fallback warning", got.Annotations[mutate.AnnotationInjected], warnings, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("the webhook's condition is left alone", func(t *testing.T) {
		var sp v1alpha1.ShutdownProfile
		if err := k8s.Get(ctx, client.ObjectKey{Name: "acme"}, &sp); err != nil {
			t.Fatal(err)
		}
		meta.SetStatusCondition(&sp.Status.Conditions, metav1.Condition{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Valid", Message: "in use by the webhook"})
		if err := k8s.Status().Update(ctx, &sp, client.FieldOwner("lastcall-webhook")); err != nil {
			t.Fatal(err)
		}
		sp.Spec.DrainDelay = &metav1.Duration{Duration: 3 * time.Second}
		if err := k8s.Update(ctx, &sp); err != nil {
			t.Fatal(err)
		}
		gen := sp.Generation
		condition(t, "acme", func(c *metav1.Condition, _ *v1alpha1.ShutdownProfile) bool { return c.ObservedGeneration == gen })
		if err := k8s.Get(ctx, client.ObjectKey{Name: "acme"}, &sp); err != nil {
			t.Fatal(err)
		}
		if a := meta.FindStatusCondition(sp.Status.Conditions, "Accepted"); a == nil || a.Message != "in use by the webhook" {
			t.Errorf("the webhook's Accepted condition is %+v after the controller's update", a)
		}
		injectedAs(t, "example.com/acme-server:1", "app=acme", 45) // 3s + 40s + 2s
	})

	t.Run("drift: an edited or deleted object is put back", func(t *testing.T) {
		var mp admissionregistrationv1.MutatingAdmissionPolicy
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &mp); err != nil {
			t.Fatal(err)
		}
		fail := admissionregistrationv1.Fail
		mp.Spec.FailurePolicy = &fail
		if err := k8s.Update(ctx, &mp, client.FieldOwner("someone")); err != nil {
			t.Fatal(err)
		}
		var bindings admissionregistrationv1.ValidatingAdmissionPolicyBindingList
		if err := k8s.List(ctx, &bindings); err != nil {
			t.Fatal(err)
		}
		var gone string
		for _, b := range bindings.Items {
			if strings.HasPrefix(b.Name, name+"-") {
				gone = b.Name
				if err := k8s.Delete(ctx, &b); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		if gone == "" {
			t.Fatal("no validating binding of the controller's render")
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			var got admissionregistrationv1.MutatingAdmissionPolicy
			var b admissionregistrationv1.ValidatingAdmissionPolicyBinding
			errM := k8s.Get(ctx, client.ObjectKey{Name: name}, &got)
			errB := k8s.Get(ctx, client.ObjectKey{Name: gone}, &b)
			if errM == nil && errB == nil && *got.Spec.FailurePolicy == admissionregistrationv1.Ignore {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 30s: mutating policy %v failurePolicy %v, binding %s: %v", errM, got.Spec.FailurePolicy, gone, errB)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("a render the API server rejects is never applied", func(t *testing.T) {
		breakWarnings.Store(true)
		defer breakWarnings.Store(false)
		var sp v1alpha1.ShutdownProfile
		if err := k8s.Get(ctx, client.ObjectKey{Name: "acme"}, &sp); err != nil {
			t.Fatal(err)
		}
		sp.Spec.DrainTimeout = &metav1.Duration{Duration: 50 * time.Second}
		if err := k8s.Update(ctx, &sp); err != nil {
			t.Fatal(err)
		}
		c := condition(t, "acme", func(c *metav1.Condition, sp *v1alpha1.ShutdownProfile) bool {
			return c.ObservedGeneration == sp.Generation
		})
		if c.Status != metav1.ConditionFalse || c.Reason != policyctl.ReasonRenderRejected || !strings.Contains(c.Message, "ValidatingAdmissionPolicy") {
			t.Errorf("acme after a rejected render: %+v; want False/%s naming the object", c, policyctl.ReasonRenderRejected)
		}
		// The last good render (timeout 40s) is what the API server runs.
		// (The pod alone would not show it: the API server may not have loaded a new render yet.)
		injectedAs(t, "example.com/acme-server:1", "app=acme", 45)
		// The object on the server is the last good render.
		good := sp.DeepCopy()
		good.Spec.DrainTimeout = &metav1.Duration{Duration: 40 * time.Second}
		appliedIs(t, *good)
	})

	t.Run("when the controller stops, admission goes on with the last render", func(t *testing.T) {
		// A good render first, so the last render has timeout 50s.
		var sp v1alpha1.ShutdownProfile
		if err := k8s.Get(ctx, client.ObjectKey{Name: "acme"}, &sp); err != nil {
			t.Fatal(err)
		}
		sp.Spec.Description = "re-render"
		if err := k8s.Update(ctx, &sp); err != nil {
			t.Fatal(err)
		}
		condition(t, "acme", func(c *metav1.Condition, sp *v1alpha1.ShutdownProfile) bool {
			return c.ObservedGeneration == sp.Generation && c.Status == metav1.ConditionTrue
		})
		injectedAs(t, "example.com/acme-server:1", "app=acme", 55) // 3s + 50s + 2s
		stopController()
		got, _, err := create(pod("example.com/acme-server:1"), false)
		if err != nil {
			t.Fatal(err)
		}
		if r, g := got.Annotations[mutate.AnnotationInjected], *got.Spec.TerminationGracePeriodSeconds; r != "app=acme" || g != 55 {
			t.Errorf("with the controller stopped: record %q grace %d, want app=acme and 55 (3s + 50s + 2s)", r, g)
		}
		// Nothing renders any more: a new profile is not picked up.
		later := &v1alpha1.ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "later"}, Spec: v1alpha1.ShutdownProfileSpec{
			StopSignal: "SIGINT", Match: &v1alpha1.ProfileMatch{Images: []string{"later-server"}}}}
		if err := k8s.Create(ctx, later); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		p := pod("example.com/later-server:1")
		p.Name = "later"
		if got, _, err := create(p, true); err != nil || got.Annotations[mutate.AnnotationInjected] != "app=http" {
			t.Errorf("a pod of a profile created after the stop: record %q (%v), want app=http", got.Annotations[mutate.AnnotationInjected], err)
		}
	})
}

// cleanupController removes what TestPolicyController created, so that later tests see neither its
// policies nor its ShutdownProfiles.
func cleanupController(t *testing.T, name string) {
	ctx := context.Background()
	objs := []client.Object{}
	for _, n := range policy.MutatingNames(name) {
		objs = append(objs, &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: n}},
			&admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	for _, n := range policy.ValidatingNames(name) {
		objs = append(objs, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: n}},
			&admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	for _, o := range append(objs, []client.Object{
		&v1alpha1.ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "acme"}},
		&v1alpha1.ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "fine-grained"}},
		&v1alpha1.ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "later"}},
	}...) {
		if err := k8s.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// The policy controller runs with exactly the permissions the chart gives it (its ServiceAccount, ClusterRole
// and Role from `helm template`, impersonated on a real API server that enforces RBAC), with the shutdown
// observer on: it renders, names its ClusterRole as the owner of what it applies (so `helm uninstall` deletes
// them), holds its Lease, and writes the PolicyCompiled condition.
func TestPolicyControllerWithChartRBAC(t *testing.T) {
	const (
		release = "rbac"
		ns      = "ctl-rbac"
		full    = "rbac-lastcall"
		name    = full + "-policy-controller"
		sa      = "system:serviceaccount:" + ns + ":" + name
	)
	ctx := context.Background()
	log := testLog(t)
	namespace(t, ns, nil, nil)
	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{UserName: sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	asClient, err := client.New(as, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	// The baseline: the API server enforces RBAC, so without the chart's roles the controller can do nothing.
	if err := asClient.List(ctx, &v1alpha1.ShutdownProfileList{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing ShutdownProfiles as %s before the chart's RBAC: %v, want forbidden", sa, err)
	}

	out, err := helm(t, "template", release, filepath.Join("..", "..", "charts", "lastcall"), "-n", ns,
		"--set", "mode=policy", "--set", "policyController.enabled=true", "--kube-version", "1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	var created []client.Object
	for _, doc := range strings.Split(out, "\n---\n") {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		switch u.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			if err := k8s.Create(ctx, &u); err != nil {
				t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
			}
			created = append(created, &u)
		}
	}
	if len(created) != 5 {
		t.Fatalf("the chart rendered %d RBAC objects for the controller, want 5", len(created))
	}
	t.Cleanup(func() {
		for _, o := range created {
			_ = k8s.Delete(ctx, o)
		}
		cleanupController(t, full+"-rendered")
		_ = k8s.Delete(ctx, &v1alpha1.ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "rbac-profile"}})
	})

	probe, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	ctlCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		// The chart's arguments (policy-controller.yaml), as Options.
		done <- server.Run(ctlCtx, as, server.Options{
			Config: filepath.Join(t.TempDir(), "none.yaml"), PolicyController: true, Namespace: ns,
			PolicyName: full + "-rendered", PolicyOwner: name, PolicyLease: name,
			Observe: true, ObserverLease: full + "-observer", MetricsAddr: "0", ProbeAddr: probe,
		}, log)
	}()
	t.Cleanup(func() {
		stop()
		waitStopped(t, done)
	})
	if err := testenv.WaitReady(probe, done, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	sp := &v1alpha1.ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "rbac-profile"}, Spec: v1alpha1.ShutdownProfileSpec{StopSignal: "SIGTERM"}}
	if err := k8s.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	var owner rbacv1.ClusterRole
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &owner); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var mp admissionregistrationv1.MutatingAdmissionPolicy
		var got v1alpha1.ShutdownProfile
		var lease, observerLease coordinationv1.Lease
		errs := []error{
			k8s.Get(ctx, client.ObjectKey{Name: full + "-rendered"}, &mp),
			k8s.Get(ctx, client.ObjectKey{Name: "rbac-profile"}, &got),
			k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &lease),
			// The observer runs next to it, elected by its own Lease.
			k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: full + "-observer"}, &observerLease),
		}
		if errs[2] == nil && (lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "") {
			errs[2] = fmt.Errorf("lease %s has no holder", name)
		}
		if errs[3] == nil && (observerLease.Spec.HolderIdentity == nil || *observerLease.Spec.HolderIdentity == "") {
			errs[3] = fmt.Errorf("lease %s-observer has no holder", full)
		}
		c := meta.FindStatusCondition(got.Status.Conditions, policyctl.ConditionType)
		refs := mp.OwnerReferences
		if errors.Join(errs...) == nil && c != nil && c.Status == metav1.ConditionTrue &&
			len(refs) == 1 && refs[0].Kind == "ClusterRole" && refs[0].UID == owner.UID && strings.Contains(mp.Spec.Variables[len(mp.Spec.Variables)-1].Expression+fmt.Sprint(mp.Spec.Variables), "rbac-profile") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: errors %v, condition %+v, owner references %+v (want the ClusterRole %s)", errs, c, refs, owner.UID)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testLog logs through t when LASTCALL_TEST_LOG=1 (debugging a failing run), else nowhere.
func testLog(t *testing.T) logr.Logger {
	if os.Getenv("LASTCALL_TEST_LOG") != "1" {
		// The manager logs through controller-runtime's global logger; without one it prints a warning.
		ctrllog.SetLogger(logr.Discard())
		return logr.Discard()
	}
	l, err := server.NewLogger("console", "info")
	if err != nil {
		t.Fatal(err)
	}
	ctrllog.SetLogger(l)
	return l
}

// waitStopped waits for a stopped controller's Run to return (for 30 s: if it already returned, WaitReady
// took its result).
func waitStopped(t *testing.T, done <-chan error) {
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the controller returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("the controller did not stop within 30s")
	}
}

// renders is lastcall_policy_renders_total{result} in the process's metrics registry (0 before the first
// controller registers it).
func renders(t *testing.T, result string) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "lastcall_policy_renders_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
