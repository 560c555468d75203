package policy_test

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

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

// evaluator is one compiled policy set, as the API server holds it.
type evaluator struct {
	mutComp, warnComp *plugincel.CompositedCompiler
	patcher           patch.Patcher
	validations       plugincel.ConditionEvaluator
	messages          plugincel.ConditionEvaluator
	scheme            *runtime.Scheme
}

func newEvaluator(tb testing.TB, ps *policy.Policies) *evaluator {
	tb.Helper()
	e := &evaluator{scheme: runtime.NewScheme()}
	if err := corev1.AddToScheme(e.scheme); err != nil {
		tb.Fatal(err)
	}
	opts := plugincel.OptionalVariableDeclarations{HasAuthorizer: true}
	compiler := func(vars []plugincel.NamedExpressionAccessor) *plugincel.CompositedCompiler {
		c, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
		if err != nil {
			tb.Fatal(err)
		}
		c.CompileAndStoreVariables(vars, opts, environment.StoredExpressions)
		return c
	}
	var mv, wv []plugincel.NamedExpressionAccessor
	for _, v := range ps.Mutating.Spec.Variables {
		mv = append(mv, &validating.Variable{Name: v.Name, Expression: v.Expression})
	}
	for _, v := range ps.Warn.Spec.Variables {
		wv = append(wv, &validating.Variable{Name: v.Name, Expression: v.Expression})
	}
	e.mutComp, e.warnComp = compiler(mv), compiler(wv)
	popts := opts
	popts.HasPatchTypes = true
	ev := e.mutComp.CompileMutatingEvaluator(&patch.JSONPatchCondition{Expression: ps.Mutating.Spec.Mutations[0].JSONPatch.Expression}, popts, environment.StoredExpressions)
	if errs := ev.CompilationErrors(); len(errs) > 0 {
		tb.Fatal(errs)
	}
	e.patcher = patch.NewJSONPatcher(ev)
	var vals, msgs []plugincel.ExpressionAccessor
	for _, v := range ps.Warn.Spec.Validations {
		vals = append(vals, &validating.ValidationCondition{Expression: v.Expression})
		msgs = append(msgs, &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression})
	}
	e.validations = e.warnComp.CompileCondition(vals, opts, environment.StoredExpressions)
	e.messages = e.warnComp.CompileCondition(msgs, plugincel.OptionalVariableDeclarations{}, environment.StoredExpressions)
	for _, c := range []plugincel.ConditionEvaluator{e.validations, e.messages} {
		if errs := c.CompilationErrors(); len(errs) > 0 {
			tb.Fatal(errs)
		}
	}
	return e
}

func attributes(pod *corev1.Pod) *admission.VersionedAttributes {
	attrs := admission.NewAttributesRecord(pod, nil, podGVK, pod.Namespace, pod.Name, podGVR, "", admission.Create, &metav1.CreateOptions{}, false, nil)
	return &admission.VersionedAttributes{Attributes: attrs, VersionedKind: podGVK, VersionedObject: admission.NewLazyObject(pod)}
}

// mutate runs the MutatingAdmissionPolicy's JSONPatch on pod.
func (e *evaluator) mutate(tb testing.TB, pod *corev1.Pod, ns *corev1.Namespace) *corev1.Pod {
	out, err := e.patcher.Patch(e.mutComp.CreateContext(context.Background()), patch.Request{MatchedResource: podGVR, VersionedAttributes: attributes(pod),
		ObjectInterfaces: admission.NewObjectInterfacesFromScheme(e.scheme), Namespace: ns}, celconfig.RuntimeCELCostBudget)
	if err != nil {
		tb.Fatal(err)
	}
	return out.(*corev1.Pod)
}

// warnings runs the warning ValidatingAdmissionPolicy on pod (the mutated pod, as the API server does): the
// validations, then every message expression, as the validating plugin evaluates them.
func (e *evaluator) warnings(tb testing.TB, pod *corev1.Pod, ns *corev1.Namespace) []string {
	ctx := e.warnComp.CreateContext(context.Background())
	va := attributes(pod)
	req := plugincel.CreateAdmissionRequest(va.Attributes, metav1.GroupVersionResource(podGVR), metav1.GroupVersionKind(podGVK))
	res, rem, err := e.validations.ForInput(ctx, va, req, plugincel.OptionalVariableBindings{}, plugincel.CreateNamespaceObject(ns), celconfig.RuntimeCELCostBudget)
	if err != nil {
		tb.Fatal(err)
	}
	msgs, _, err := e.messages.ForInput(ctx, va, req, plugincel.OptionalVariableBindings{}, plugincel.CreateNamespaceObject(ns), rem)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for i, r := range res {
		if r.Error != nil {
			tb.Fatalf("validation %d: %v", i, r.Error)
		}
		if r.EvalResult.Value() == false {
			out = append(out, msgs[i].EvalResult.Value().(string))
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
// mutation (CEL, JSON Patch, decode) and the warning policy on the mutated pod.
func BenchmarkPolicyAdmission(b *testing.B) {
	ps, err := policy.Compile(policy.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "v0"})
	if err != nil {
		b.Fatal(err)
	}
	e := newEvaluator(b, ps)
	pod, ns := benchPod()
	mutated := e.mutate(b, pod, ns)
	if mutated.Annotations[mutate.AnnotationInjected] != "web=nginx,php=php-fpm" {
		b.Fatalf("not injected: %v", mutated.Annotations)
	}
	if w := e.warnings(b, mutated, ns); len(w) != 0 {
		b.Fatalf("warnings: %q", w)
	}
	b.Run("mutating", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.mutate(b, pod, ns)
		}
	})
	b.Run("warnings", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.warnings(b, mutated, ns)
		}
	})
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
	for _, set := range []struct {
		name string
		comp *plugincel.CompositedCompiler
		vars []string
		pod  *corev1.Pod
	}{{"mutating", e.mutComp, names(ps.Mutating.Spec.Variables), pod}, {"warnings", e.warnComp, names(ps.Warn.Spec.Variables), e.mutate(t, pod, ns)},
		{"warnings (as used)", e.warnComp, []string{"anns", "nsAnns", "nsDef", "catalog", "recEntries", "fast", "warningsOut"}, e.mutate(t, pod, ns)}} {
		va := attributes(set.pod)
		req := plugincel.CreateAdmissionRequest(va.Attributes, metav1.GroupVersionResource(podGVR), metav1.GroupVersionKind(podGVK))
		var refs []string
		prev := int64(0)
		type row struct {
			name string
			cost int64
		}
		var rows []row
		for _, v := range set.vars {
			refs = append(refs, "type(variables."+v+") != null_type")
			cond := set.comp.CompileCondition([]plugincel.ExpressionAccessor{&validating.ValidationCondition{Expression: strings.Join(refs, " && ")}}, plugincel.OptionalVariableDeclarations{HasAuthorizer: true}, environment.StoredExpressions)
			_, rem, err := cond.ForInput(set.comp.CreateContext(context.Background()), va, req, plugincel.OptionalVariableBindings{}, plugincel.CreateNamespaceObject(ns), celconfig.RuntimeCELCostBudget)
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
		t.Logf("%s: all variables %d: %s", set.name, prev, b.String())
	}
}

func names(vs []admissionregistrationv1.Variable) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}
