package policy

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/internal/cli"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// What `lastcall policy render` prints for the built-in catalog is accepted by the API server as it is, and
// the pods it then admits are injected like the webhook would (nginx, nginx + php-fpm, the http default),
// while an opted-out pod is left alone. A pod in a namespace that is not opted in is never touched.
func TestRenderedPoliciesAccepted(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := cli.Run([]string{"policy", "render", "--name", "rendered"}, nil, &out, &errOut); code != cli.ExitOK {
		t.Fatalf("policy render: exit %d: %s", code, errOut.String())
	}
	apply(t, out.Bytes(), nil)
	namespace(t, "rendered", map[string]string{mutate.LabelInject: "enabled"}, nil)
	namespace(t, "rendered-off", nil, nil)
	pod := func(name, ns string, containers ...corev1.Container) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{Containers: containers}}
	}
	nginx := corev1.Container{Name: "web", Image: "nginx:1.27"}
	fpm := corev1.Container{Name: "php", Image: "php:8.3-fpm"}
	app := corev1.Container{Name: "app", Image: "example.com/shop:1"}

	// The policies are loaded asynchronously.
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, _, err := create(pod("probe", "rendered", nginx), true)
		if err == nil && got.Annotations[mutate.AnnotationInjected] != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rendered policies not active after 60s (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, tc := range []struct {
		pod      *corev1.Pod
		injected string
		grace    int64
		inits    int
	}{
		{pod("nginx", "rendered", nginx), "web=nginx", 32, 1},
		{pod("nginx-php", "rendered", nginx, fpm), "web=nginx,php=php-fpm", 38, 2},
		{pod("http", "rendered", app), "app=http", 32, 0},
		{pod("nginx", "rendered-off", nginx), "", 30, 0},
	} {
		got, _, err := create(tc.pod, false)
		if err != nil {
			t.Fatalf("%s/%s: %v", tc.pod.Namespace, tc.pod.Name, err)
		}
		if got.Annotations[mutate.AnnotationInjected] != tc.injected || *got.Spec.TerminationGracePeriodSeconds != tc.grace || len(got.Spec.InitContainers) != tc.inits {
			t.Errorf("%s/%s: injected %q grace %d init containers %d; want %q, %d, %d", tc.pod.Namespace, tc.pod.Name,
				got.Annotations[mutate.AnnotationInjected], *got.Spec.TerminationGracePeriodSeconds, len(got.Spec.InitContainers), tc.injected, tc.grace, tc.inits)
		}
	}
	out1 := pod("opted-out", "rendered", nginx)
	out1.Labels = map[string]string{mutate.LabelInject: "disabled"}
	out2 := pod("opted-out-annotation", "rendered", nginx)
	out2.Annotations = map[string]string{mutate.AnnotationInject: "false"}
	for _, p := range []*corev1.Pod{out1, out2} {
		got, _, err := create(p, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.InitContainers) != 0 || got.Annotations[mutate.AnnotationInjected] != "" || got.Spec.Containers[0].Lifecycle != nil {
			t.Errorf("%s: opted out but injected", p.Name)
		}
	}
}

// apply creates every object of a policy rendering; with sel, the bindings select namespaces by it instead.
func apply(t *testing.T, data []byte, sel *metav1.LabelSelector) {
	t.Helper()
	ctx := context.Background()
	for _, doc := range strings.Split(string(data), "\n---\n") {
		if strings.TrimSpace(doc) == "" || !strings.Contains(doc, "kind:") {
			continue
		}
		var h metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &h); err != nil {
			t.Fatal(err)
		}
		var obj client.Object
		switch h.Kind {
		case "MutatingAdmissionPolicy":
			obj = &admissionregistrationv1.MutatingAdmissionPolicy{}
		case "MutatingAdmissionPolicyBinding":
			obj = &admissionregistrationv1.MutatingAdmissionPolicyBinding{}
		case "ValidatingAdmissionPolicy":
			obj = &admissionregistrationv1.ValidatingAdmissionPolicy{}
		case "ValidatingAdmissionPolicyBinding":
			obj = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
		case "", "CustomResourceDefinition": // envtest installs the CRD itself
			continue
		default:
			t.Fatalf("unexpected kind %q in the rendering", h.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %v", h.Kind, err)
		}
		if sel != nil {
			switch b := obj.(type) {
			case *admissionregistrationv1.MutatingAdmissionPolicyBinding:
				b.Spec.MatchResources.NamespaceSelector = sel
			case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
				b.Spec.MatchResources.NamespaceSelector = sel
			}
		}
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatalf("the API server refused the rendered %s: %v", h.Kind, err)
		}
	}
}

// Warnings for keys the goldens do not cover are the engine's too: an unknown key, a suffix naming no
// container, a signal number that is no graceful signal, a timeout out of range. (A key with an empty
// container suffix never gets here: the API server refuses it.)
func TestWarningsMatchEngine(t *testing.T) {
	install(t, "warnings", policy.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "v0.0.0-test"})
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: "probe-warnings", Annotations: map[string]string{
		mutate.Prefix + "drain-dealy": "5s", mutate.AnnotationDrainDelay + ".nope": "1s",
		mutate.AnnotationStopSignal: "99", mutate.AnnotationDrainTimeout: "90m",
	}}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}
	_, warnings, err := create(p, true)
	if err != nil {
		t.Fatal(err)
	}
	eng := mutate.New(mutate.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "v0.0.0-test"})
	res := eng.Mutate(p, mutate.Namespace{Name: p.Namespace, Labels: map[string]string{mutate.LabelInject: "enabled"}}, profiles.Builtins())
	if d := cmp.Diff(res.AllWarnings(), warnings); d != "" {
		t.Errorf("warnings (-engine +policy):\n%s", d)
	}
}
