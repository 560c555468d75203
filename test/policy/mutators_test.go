package policy

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

// meshLabel selects the namespaces of TestAnotherMutatorInPolicyMode's mesh-like policies, by name.
const meshLabel = "policy-test.lastcall.dev/mesh"

// meshPolicy is another mutator, shaped like a service mesh's injector: it appends a proxy container, an
// app container of its own ("added", an nginx that lastcall must handle on its second pass) and an init
// container, once per pod. It is a MutatingAdmissionPolicy so the API server's own ordering and
// reinvocation decide when it runs relative to lastcall's; its name puts it before or after lastcall's.
func meshPolicy(name string) (*admissionregistrationv1.MutatingAdmissionPolicy, *admissionregistrationv1.MutatingAdmissionPolicyBinding) {
	init := "{'name': dyn('istio-init'), 'image': dyn('istio/proxyv2:1.24'), 'args': dyn(['istio-iptables'])}"
	patch := "[JSONPatch{op: 'add', path: '/spec/containers/-', value: {'name': dyn('istio-proxy'), 'image': dyn('istio/proxyv2:1.24'), 'args': dyn(['proxy', 'sidecar'])}}, " +
		"JSONPatch{op: 'add', path: '/spec/containers/-', value: {'name': dyn('added'), 'image': dyn('nginx:1.27')}}] + " +
		"(has(object.spec.initContainers) ? [JSONPatch{op: 'add', path: '/spec/initContainers/-', value: " + init + "}] : " +
		"[JSONPatch{op: 'add', path: '/spec/initContainers', value: [" + init + "]}])"
	p := &admissionregistrationv1.MutatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			MatchConditions: []admissionregistrationv1.MatchCondition{{Name: "once",
				Expression: "!object.spec.containers.exists(c, c.name in ['istio-proxy', 'added']) && !object.spec.?initContainers.orValue([]).exists(c, c.name == 'istio-init')"}},
			Mutations: []admissionregistrationv1.Mutation{{PatchType: admissionregistrationv1.PatchTypeJSONPatch,
				JSONPatch: &admissionregistrationv1.JSONPatch{Expression: patch}}},
			FailurePolicy:      ptr.To(admissionregistrationv1.Fail),
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
		},
	}
	b := &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: name, MatchResources: &admissionregistrationv1.MatchResources{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{meshLabel: name}}}},
	}
	return p, b
}

// Another mutator changes the pod after lastcall's policy has run (or before it): every golden case, created
// in a namespace served by the policies and by a mesh-like policy that adds two containers and an init
// container, is stored as the engine would leave it. The stored pod is a fixed point of the engine (nothing
// left for lastcall to do: the added nginx rendered, the proxy recorded as skipped, the grace period covering
// both, no hook of the mesh's touched) and keeps everything the other mutator wrote. Both orders are run:
// the mesh's policy named before lastcall's and after it.
func TestAnotherMutatorInPolicyMode(t *testing.T) {
	cases, err := testcases.Load("../../pkg/mutate/testdata")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"aaa-mesh", "zzz-mesh"} {
		p, b := meshPolicy(name)
		if err := k8s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := k8s.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	setOf := installSets(t, cases)
	// The API server loads policies asynchronously: wait until both mesh policies apply.
	for _, name := range []string{"aaa-mesh", "zzz-mesh"} {
		namespace(t, "probe-"+name, map[string]string{meshLabel: name}, nil)
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			got, _, err := create(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "probe-" + name},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}, true)
			return err == nil && len(got.Spec.Containers) == 3, nil
		}); err != nil {
			t.Fatalf("waiting for %s to apply: %v", name, err)
		}
	}
	checked, rendered := 0, 0
	for _, c := range cases {
		for _, mesh := range []string{"aaa-mesh", "zzz-mesh"} {
			t.Run(c.Name+"/"+mesh, func(t *testing.T) {
				switch {
				case c.Spec.EnvtestSkip != "":
					t.Skip(c.Spec.EnvtestSkip)
				case c.Engine.Policy().Strict:
					t.Skip("strict mode: a denial is the parity test's")
				case c.Engine.Capabilities().StopSignal:
					t.Skip("envtest's API server drops lifecycle.stopSignal (feature gate off), which the engine would write again")
				}
				for _, list := range [][]corev1.Container{c.Pod.Spec.Containers, c.Pod.Spec.InitContainers} {
					for _, x := range list {
						if x.Lifecycle != nil && x.Lifecycle.StopSignal != nil {
							t.Skip("envtest's API server drops lifecycle.stopSignal (feature gate off)")
						}
						if x.Name == "istio-proxy" || x.Name == "added" || x.Name == "istio-init" {
							t.Skip("the pod has a container named like the mesh's")
						}
					}
				}
				// Pod Security labels are left out: the mesh's containers are not "restricted".
				labels := map[string]string{setLabel: setOf[c.Name], meshLabel: mesh}
				for k, v := range c.Namespace.Labels {
					if !strings.HasPrefix(k, "pod-security.kubernetes.io/") {
						labels[k] = v
					}
				}
				nsName := nsName("m"+mesh[:1]+"-", c.Name)
				namespace(t, nsName, labels, c.Namespace.Annotations)
				in := c.Pod.DeepCopy()
				in.Namespace = nsName
				got, warnings, err := create(in, true)
				if err != nil {
					t.Fatalf("create: %v", err)
				}
				for _, want := range []string{"istio-proxy", "added"} {
					if !hasContainer(got.Spec.Containers, want) {
						t.Fatalf("the mesh's container %s is not in the stored pod: %v", want, containerNames(got.Spec.Containers))
					}
				}
				if !hasContainer(got.Spec.InitContainers, "istio-init") {
					t.Fatalf("the mesh's init container is not in the stored pod: %v", containerNames(got.Spec.InitContainers))
				}
				for _, w := range warnings {
					if strings.Contains(w, "policy mode cannot handle this pod") {
						t.Skipf("the policy leaves this pod to the webhook: %s", w)
					}
				}
				checked++
				ns := mutate.Namespace{Name: nsName, Labels: labels, Annotations: c.Namespace.Annotations}
				res := c.Engine.Mutate(got, ns, c.Catalog)
				if d := cmp.Diff(got, res.Pod, cmpopts.EquateEmpty()); d != "" {
					t.Fatalf("the stored pod is not as the engine leaves it: lastcall's policy missed or undid something (warnings %q, annotations %v) (-stored +engine):\n%s", warnings, got.Annotations, d)
				}
				if strings.Contains(","+got.Annotations[mutate.AnnotationInjected], ",added=") && !strings.Contains(","+got.Annotations[mutate.AnnotationInjected], ",added=-") {
					rendered++
				}
			})
		}
	}
	// The mesh's nginx is rendered on most pods: the reinvocation path really ran.
	if checked < 80 || rendered < checked/2 {
		t.Fatalf("%d pods checked, the mesh's nginx rendered in %d: too few to show the second pass", checked, rendered)
	}
	t.Logf("%d pods checked, the mesh's nginx rendered by lastcall in %d", checked, rendered)
}

func hasContainer(cs []corev1.Container, name string) bool {
	return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == name })
}

func containerNames(cs []corev1.Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}
