package policy_test

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating/patch"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
)

// The benchmarks run the compiled policies with the API server's own admission CEL code (k8s.io/apiserver,
// the version of the local cluster), the way its MutatingAdmissionPolicy and ValidatingAdmissionPolicy
// plugins do: variables compiled once into a composited compiler, evaluated lazily per admission with cost
// tracking. test/policy measures the same policies end to end on a real kube-apiserver.

var (
	podGVK = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	podGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
)

// evaluator is one compiled policy set, as the API server holds it: each policy's variables in its own
// composited compiler, its matchConditions, its mutation or validations and message expressions.
type evaluator struct {
	mutating   []*compiled
	validating []*compiled
	scheme     *runtime.Scheme
	// plain is the condition under which the mutating policy takes the plain way.
	plain *compiled
}

type compiled struct {
	name        string
	comp        *plugincel.CompositedCompiler
	conditions  plugincel.ConditionEvaluator
	patcher     patch.Patcher
	validations plugincel.ConditionEvaluator
	messages    plugincel.ConditionEvaluator
	vars        []string
}

var optionalDecls = plugincel.OptionalVariableDeclarations{HasAuthorizer: true}

func compile(tb testing.TB, vars []admissionregistrationv1.Variable, conds []admissionregistrationv1.MatchCondition) *compiled {
	tb.Helper()
	comp, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		tb.Fatal(err)
	}
	var nv []plugincel.NamedExpressionAccessor
	for _, v := range vars {
		nv = append(nv, &validating.Variable{Name: v.Name, Expression: v.Expression})
	}
	comp.CompileAndStoreVariables(nv, optionalDecls, environment.StoredExpressions)
	var ce []plugincel.ExpressionAccessor
	for _, c := range conds {
		ce = append(ce, &validating.ValidationCondition{Expression: c.Expression})
	}
	out := &compiled{comp: comp, conditions: comp.CompileCondition(ce, optionalDecls, environment.StoredExpressions), vars: names(vars)}
	mustCompile(tb, out.conditions)
	return out
}

func mustCompile(tb testing.TB, c plugincel.ConditionEvaluator) {
	tb.Helper()
	if errs := c.CompilationErrors(); len(errs) > 0 {
		tb.Fatal(errs)
	}
}

func newEvaluator(tb testing.TB, ps *policy.Policies) *evaluator {
	tb.Helper()
	e := &evaluator{scheme: runtime.NewScheme(),
		plain: compile(tb, nil, []admissionregistrationv1.MatchCondition{{Name: "plain", Expression: ps.PlainCondition()}})}
	if err := corev1.AddToScheme(e.scheme); err != nil {
		tb.Fatal(err)
	}
	for _, p := range ps.Mutating {
		m := compile(tb, p.Spec.Variables, p.Spec.MatchConditions)
		popts := optionalDecls
		popts.HasPatchTypes = true
		ev := m.comp.CompileMutatingEvaluator(&patch.JSONPatchCondition{Expression: p.Spec.Mutations[0].JSONPatch.Expression}, popts, environment.StoredExpressions)
		if errs := ev.CompilationErrors(); len(errs) > 0 {
			tb.Fatal(errs)
		}
		m.patcher = patch.NewJSONPatcher(ev)
		m.name = p.Name
		e.mutating = append(e.mutating, m)
	}
	for _, p := range ps.Validating {
		v := compile(tb, p.Spec.Variables, p.Spec.MatchConditions)
		var vals, msgs []plugincel.ExpressionAccessor
		for _, x := range p.Spec.Validations {
			vals = append(vals, &validating.ValidationCondition{Expression: x.Expression})
			msgs = append(msgs, &validating.MessageExpressionCondition{MessageExpression: x.MessageExpression})
		}
		v.validations = v.comp.CompileCondition(vals, optionalDecls, environment.StoredExpressions)
		v.messages = v.comp.CompileCondition(msgs, plugincel.OptionalVariableDeclarations{}, environment.StoredExpressions)
		mustCompile(tb, v.validations)
		mustCompile(tb, v.messages)
		v.name = p.Name
		e.validating = append(e.validating, v)
	}
	return e
}

func attributes(pod *corev1.Pod) (*admission.VersionedAttributes, *admissionv1.AdmissionRequest) {
	attrs := admission.NewAttributesRecord(pod, nil, podGVK, pod.Namespace, pod.Name, podGVR, "", admission.Create, &metav1.CreateOptions{}, false, nil)
	return &admission.VersionedAttributes{Attributes: attrs, VersionedKind: podGVK, VersionedObject: admission.NewLazyObject(pod)},
		plugincel.CreateAdmissionRequest(attrs, metav1.GroupVersionResource(podGVR), metav1.GroupVersionKind(podGVK))
}

// matches evaluates a policy's matchConditions as the API server's matcher does (all must hold).
func (c *compiled) matches(tb testing.TB, pod *corev1.Pod, ns *corev1.Namespace) bool {
	va, req := attributes(pod)
	res, _, err := c.conditions.ForInput(c.comp.CreateContext(context.Background()), va, req, plugincel.OptionalVariableBindings{}, plugincel.CreateNamespaceObject(ns), celconfig.RuntimeCELCostBudget)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range res {
		if r.Error != nil {
			tb.Fatal(r.Error)
		}
		if r.EvalResult.Value() != true {
			return false
		}
	}
	return true
}

// matching names the policies of cs whose conditions match pod (e.mutating or e.validating).
func matching(tb testing.TB, cs []*compiled, pod *corev1.Pod, ns *corev1.Namespace) []string {
	var out []string
	for _, c := range cs {
		if c.matches(tb, pod, ns) {
			out = append(out, c.name)
		}
	}
	return out
}

// plainWay tells whether the mutating policy takes pod the plain way.
func (e *evaluator) plainWay(tb testing.TB, pod *corev1.Pod, ns *corev1.Namespace) bool {
	return e.plain.matches(tb, pod, ns)
}

// mutate runs every mutating policy whose conditions match, in order, as one pass of the admission chain.
func (e *evaluator) mutate(tb testing.TB, pod *corev1.Pod, ns *corev1.Namespace) *corev1.Pod {
	for _, m := range e.mutating {
		if !m.matches(tb, pod, ns) {
			continue
		}
		va, _ := attributes(pod)
		out, err := m.patcher.Patch(m.comp.CreateContext(context.Background()), patch.Request{MatchedResource: podGVR, VersionedAttributes: va,
			ObjectInterfaces: admission.NewObjectInterfacesFromScheme(e.scheme), Namespace: ns}, celconfig.RuntimeCELCostBudget)
		if err != nil {
			tb.Fatal(err)
		}
		pod = out.(*corev1.Pod)
	}
	return pod
}

// warnings runs every matching validating policy on pod (the mutated pod, as the API server does): the
// validations, then every message expression, as the validating plugin evaluates them.
func (e *evaluator) warnings(tb testing.TB, pod *corev1.Pod, ns *corev1.Namespace) []string {
	var out []string
	for _, v := range e.validating {
		if !v.matches(tb, pod, ns) {
			continue
		}
		ctx := v.comp.CreateContext(context.Background())
		va, req := attributes(pod)
		nso := plugincel.CreateNamespaceObject(ns)
		res, rem, err := v.validations.ForInput(ctx, va, req, plugincel.OptionalVariableBindings{}, nso, celconfig.RuntimeCELCostBudget)
		if err != nil {
			tb.Fatal(err)
		}
		msgs, _, err := v.messages.ForInput(ctx, va, req, plugincel.OptionalVariableBindings{}, nso, rem)
		if err != nil {
			tb.Fatal(err)
		}
		for i, r := range res {
			if r.Error != nil {
				tb.Fatalf("validation %d: %v", i, r.Error)
			}
			if r.EvalResult.Value() == false {
				out = append(out, msgs[i].EvalResult.Value().(string))
			}
		}
	}
	return out
}

func benchPod() (*corev1.Pod, *corev1.Namespace) {
	pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}, {Name: "php", Image: "php:8.3-fpm"}}}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{mutate.LabelInject: "enabled"}}}
	return pod, ns
}

// BenchmarkPolicyAdmission is the CPU one pod CREATE costs in the API server's policy plugins: the
// mutation (CEL, JSON Patch, decode) and the warning policy on the mutated pod. "plain" is the pod most
// clusters create (the plain policy takes it); "init-container" is the same pod with an init container of
// the user's, "pod-annotations" a worker whose profile and supervision are chosen by pod-wide annotations:
// both the plain policy's too (a per-container annotation, a lifecycle hook or an earlier injection makes a
// pod general).
func BenchmarkPolicyAdmission(b *testing.B) {
	ps, err := policy.Compile(policy.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "v0"})
	if err != nil {
		b.Fatal(err)
	}
	e := newEvaluator(b, ps)
	plain, ns := benchPod()
	withInit := plain.DeepCopy()
	withInit.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "example.com/shop/migrate:1", Command: []string{"/migrate", "up"}}}
	// A Celery worker behind a shell entrypoint, its profile and supervision chosen by annotation.
	annotated := plain.DeepCopy()
	annotated.Annotations = map[string]string{mutate.AnnotationProfile: "celery", mutate.AnnotationSupervise: "true"}
	annotated.Spec.Containers = []corev1.Container{{Name: "worker", Image: "example.com/shop/app:1", Command: []string{"sh", "-c", "celery -A tasks worker"}}}
	for _, c := range []struct {
		name, record string
		pod          *corev1.Pod
	}{{"plain", "web=nginx,php=php-fpm", plain}, {"init-container", "web=nginx,php=php-fpm", withInit}, {"pod-annotations", "worker=celery", annotated}} {
		pod := c.pod
		// All are the plain policy's: neither a user's init container nor a pod-wide profile or supervision
		// annotation makes a pod general.
		if got := matching(b, e.mutating, pod, ns); len(got) != 1 || !e.plainWay(b, pod, ns) {
			b.Fatalf("%s: mutating policies %v, want one, taking the plain way", c.name, got)
		}
		mutated := e.mutate(b, pod, ns)
		if mutated.Annotations[mutate.AnnotationInjected] != c.record {
			b.Fatalf("%s: not injected: %v", c.name, mutated.Annotations)
		}
		if w := e.warnings(b, mutated, ns); len(w) != 0 {
			b.Fatalf("%s: warnings: %q", c.name, w)
		}
		b.Run(c.name+"/mutating", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				// Both passes of the mutating chain: the policy's own change makes the API server run it again.
				e.mutate(b, e.mutate(b, pod, ns), ns)
			}
		})
		b.Run(c.name+"/warnings", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.warnings(b, mutated, ns)
			}
		})
	}
}

// TestVariableCost prints each variable's CEL cost for the benchmark pod (LASTCALL_CEL_COST=1): what to cut
// when the benchmark regresses.
func TestVariableCost(t *testing.T) {
	if os.Getenv("LASTCALL_CEL_COST") == "" {
		t.Skip("set LASTCALL_CEL_COST=1 to list the variables' costs")
	}
	ps, err := policy.Compile(policy.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "v0"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEvaluator(t, ps)
	pod, ns := benchPod()
	mutated := e.mutate(t, pod, ns)
	report := func(name string, c *compiled, pod *corev1.Pod) {
		va, req := attributes(pod)
		var refs []string
		prev := int64(0)
		type row struct {
			name string
			cost int64
		}
		var rows []row
		for _, v := range c.vars {
			refs = append(refs, "type(variables."+v+") != null_type")
			cond := c.comp.CompileCondition([]plugincel.ExpressionAccessor{&validating.ValidationCondition{Expression: strings.Join(refs, " && ")}}, optionalDecls, environment.StoredExpressions)
			_, rem, err := cond.ForInput(c.comp.CreateContext(context.Background()), va, req, plugincel.OptionalVariableBindings{}, plugincel.CreateNamespaceObject(ns), celconfig.RuntimeCELCostBudget)
			if err != nil {
				t.Fatal(err)
			}
			cost := celconfig.RuntimeCELCostBudget - rem
			rows = append(rows, row{v, cost - prev})
			prev = cost
		}
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].cost > rows[j].cost })
		var b strings.Builder
		for _, r := range rows {
			b.WriteString(r.name + ":" + strconv.FormatInt(r.cost, 10) + " ")
		}
		t.Logf("%s (%d variables): all %d: %s", name, len(c.vars), prev, b.String())
	}
	for i, m := range e.mutating {
		report(ps.Mutating[i].Name, m, pod)
	}
	for i, v := range e.validating {
		report(ps.Validating[i].Name, v, mutated)
	}
}

func names(vs []admissionregistrationv1.Variable) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}

// TestPlainPolicyTakes pins which mutating policy takes which pod: the plain one for pods without lastcall's
// traces but a pod-wide profile or supervision annotation, with or without init containers or native
// sidecars of the user's (the common case the plain policy is there
// for: the general one costs several times its CPU), the general one for everything it cannot know. Which
// pods each gives what is the fuzz target's and the parity test's job; this one keeps the fast path from
// shrinking unnoticed.
func TestPlainPolicyTakes(t *testing.T) {
	ps, err := policy.Compile(policy.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "v0"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEvaluator(t, ps)
	base, ns := benchPod()
	with := func(edit func(p *corev1.Pod)) *corev1.Pod {
		p := base.DeepCopy()
		edit(p)
		return p
	}
	user := corev1.Container{Name: "migrate", Image: "example.com/migrate:1", Command: []string{"/migrate"}}
	always := corev1.ContainerRestartPolicyAlways
	for _, c := range []struct {
		name  string
		pod   *corev1.Pod
		plain bool
	}{
		{"no init containers", base, true},
		{"an empty init container list", with(func(p *corev1.Pod) { p.Spec.InitContainers = []corev1.Container{} }), true},
		{"two init containers of the user's", with(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{user, {Name: "wait", Image: "busybox", Args: []string{"sleep", "1"}}}
		}), true},
		{"a native sidecar", with(func(p *corev1.Pod) {
			s := user
			s.RestartPolicy = &always
			p.Spec.InitContainers = []corev1.Container{s}
		}), true},
		{"lastcall's shim init container", with(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "lastcall-shim", Image: "shim", Command: []string{mutate.ShimImagePath, "install", mutate.ShimDir}}}
		}), false},
		{"an init container running the installed shim", with(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "c", Image: "php:8.3-fpm", Command: []string{mutate.ShimPath, "check", "php-fpm"}}}
		}), false},
		{"a pod-wide profile and supervision", with(func(p *corev1.Pod) {
			p.Annotations = map[string]string{mutate.AnnotationProfile: "nginx", mutate.AnnotationSupervise: "true"}
		}), true},
		{"a pod-wide profile of auto", with(func(p *corev1.Pod) { p.Annotations = map[string]string{mutate.AnnotationProfile: "auto"} }), true},
		{"a profile no catalog has", with(func(p *corev1.Pod) { p.Annotations = map[string]string{mutate.AnnotationProfile: "nope"} }), false},
		{"a profile spelled with a space", with(func(p *corev1.Pod) { p.Annotations = map[string]string{mutate.AnnotationProfile: "nginx "} }), false},
		{"a per-container profile", with(func(p *corev1.Pod) { p.Annotations = map[string]string{mutate.AnnotationProfile + ".web": "nginx"} }), false},
		{"a drain delay annotation", with(func(p *corev1.Pod) { p.Annotations = map[string]string{mutate.AnnotationDrainDelay: "3s"} }), false},
		{"a record of an earlier pass (a container added since)", with(func(p *corev1.Pod) { p.Annotations = map[string]string{mutate.AnnotationInjected: "web=nginx"} }), false},
		{"a container with a lifecycle", with(func(p *corev1.Pod) { p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{} }), false},
	} {
		got := matching(t, e.mutating, c.pod, ns)
		if len(got) != 1 {
			t.Errorf("%s: mutating policies %v, want exactly one", c.name, got)
			continue
		}
		if plain := e.plainWay(t, c.pod, ns); plain != c.plain {
			t.Errorf("%s: the plain way %v, want %v", c.name, plain, c.plain)
		}
		// What the plain policy injects, the warnings' short way takes (skipped sidecars included).
		if c.plain {
			if v := matching(t, e.validating, e.mutate(t, c.pod, ns), ns); len(v) != 1 || !strings.HasSuffix(v[0], "-warnings-handled") {
				t.Errorf("%s: the injected pod's warnings taken by %v, want the short way only", c.name, v)
			}
		}
	}
}
