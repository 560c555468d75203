package integration

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

func namespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := k8s.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func nginxPod(name, ns string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}
}

// The API server calls the webhook for a Pod CREATE in an opted-in namespace, and the stored pod is injected.
func TestAPIServerCallsWebhook(t *testing.T) {
	ctx := context.Background()
	namespace(t, "opted-in", map[string]string{mutate.LabelInject: "enabled"})
	namespace(t, "not-opted-in", nil)

	p := nginxPod("web", "opted-in")
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	var stored corev1.Pod
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &stored); err != nil {
		t.Fatal(err)
	}
	if stored.Annotations[mutate.AnnotationInjected] != "web=nginx" {
		t.Errorf("annotation %s = %q, want web=nginx", mutate.AnnotationInjected, stored.Annotations[mutate.AnnotationInjected])
	}
	if len(stored.Spec.InitContainers) != 1 || stored.Spec.InitContainers[0].Name != mutate.ShimContainerName {
		t.Errorf("init containers = %v, want the shim", stored.Spec.InitContainers)
	}
	if g := stored.Spec.TerminationGracePeriodSeconds; g == nil || *g != 32 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 32", g)
	}
	pre := stored.Spec.Containers[0].Lifecycle.PreStop
	if pre == nil || pre.Exec == nil || strings.Join(pre.Exec.Command, " ") != "/lastcall/bin/lastcall-shim prestop --delay 5s --signal SIGQUIT --timeout 25s" {
		t.Errorf("preStop = %+v", pre)
	}

	other := nginxPod("web", "not-opted-in")
	if err := k8s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(other), &stored); err != nil {
		t.Fatal(err)
	}
	if len(stored.Spec.InitContainers) != 0 || stored.Annotations[mutate.AnnotationInjected] != "" {
		t.Errorf("pod in a namespace without the label was injected: %+v", stored.Spec.InitContainers)
	}

	out := nginxPod("opted-out", "opted-in")
	out.Labels = map[string]string{mutate.LabelInject: "disabled"}
	if err := k8s.Create(ctx, out); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(out), &stored); err != nil {
		t.Fatal(err)
	}
	if len(stored.Spec.InitContainers) != 0 {
		t.Errorf("opted-out pod was injected")
	}
}

// A bad annotation reaches the user as an API warning naming the key and value, and the pod is created.
func TestWarningsReachTheClient(t *testing.T) {
	namespace(t, "warn", map[string]string{mutate.LabelInject: "enabled"})
	var got []string
	cfg2 := *cfg
	cfg2.WarningHandler = warningRecorder(func(s string) { got = append(got, s) })
	cs := kubernetes.NewForConfigOrDie(&cfg2)
	p := nginxPod("bad", "warn")
	p.Annotations = map[string]string{mutate.AnnotationDrainDelay: "soonish"}
	if _, err := cs.CoreV1().Pods("warn").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(got, "\n")
	if !strings.Contains(joined, `lastcall.dev/drain-delay="soonish"`) || !strings.Contains(joined, "5s") {
		t.Fatalf("warnings %q do not name the annotation, value and fallback", got)
	}
}

type warningRecorder func(string)

func (w warningRecorder) HandleWarningHeader(code int, agent, text string) { w(text) }

// Every golden output is a pod the API server accepts (server-side dry run). Cases for restricted namespaces
// are checked in a namespace that enforces Pod Security "restricted".
func TestGoldenOutputsAreValid(t *testing.T) {
	cases, err := testcases.Load("../../pkg/mutate/testdata")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if c.Spec.EnvtestSkip != "" {
				t.Skip(c.Spec.EnvtestSkip)
			}
			data, err := os.ReadFile(c.Golden)
			if err != nil {
				t.Fatal(err)
			}
			podYAML, _, _ := strings.Cut(string(data), "\n---\n")
			var pod corev1.Pod
			if err := yaml.UnmarshalStrict([]byte(podYAML), &pod); err != nil {
				t.Fatal(err)
			}
			// A namespace the webhook does not select, so the server validates exactly the golden pod.
			ns := "golden-" + c.Name
			if len(ns) > 63 {
				ns = ns[:63]
			}
			labels := map[string]string{}
			if v, ok := c.Namespace.Labels["pod-security.kubernetes.io/enforce"]; ok {
				labels["pod-security.kubernetes.io/enforce"] = v
			}
			namespace(t, ns, labels)
			pod.Namespace = ns
			if err := k8s.Create(ctx, &pod, client.DryRunAll); err != nil {
				t.Fatalf("API server refused the golden pod: %v", err)
			}
		})
	}
}

// The restricted check can fail: an injected container that breaks "restricted" is refused.
func TestRestrictedNamespaceRefusesNonCompliantPod(t *testing.T) {
	namespace(t, "restricted-neg", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	p := nginxPod("web", "restricted-neg")
	err := k8s.Create(context.Background(), p, client.DryRunAll)
	if err == nil || !strings.Contains(err.Error(), "restricted") {
		t.Fatalf("want a Pod Security refusal, got %v", err)
	}
}

// A new and then a changed ShutdownProfile take effect on the next admission, without a restart, and the
// webhook reports it as accepted in the profile's status.
func TestShutdownProfileChangesApply(t *testing.T) {
	ctx := context.Background()
	namespace(t, "profiles", map[string]string{mutate.LabelInject: "enabled"})
	delay := metav1.Duration{Duration: 9 * time.Second}
	sp := &v1alpha1.ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "envoy"}, Spec: v1alpha1.ShutdownProfileSpec{
		StopSignal: "SIGTERM", DrainDelay: &delay, Match: &v1alpha1.ProfileMatch{Images: []string{"envoy"}}}}
	if err := k8s.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, sp) })
	sleepOf := func(name string) int64 {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "profiles"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "proxy", Image: "envoyproxy/envoy:v1.31"}}}}
		if err := k8s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if l := p.Spec.Containers[0].Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
			return l.PreStop.Sleep.Seconds
		}
		return -1
	}
	eventually(t, func() bool { return sleepOf(newName("envoy")) == 9 }, "new ShutdownProfile envoy (9s) applied")

	if err := k8s.Get(ctx, client.ObjectKeyFromObject(sp), sp); err != nil {
		t.Fatal(err)
	}
	sp.Spec.DrainDelay = &metav1.Duration{Duration: 4 * time.Second}
	if err := k8s.Update(ctx, sp); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return sleepOf(newName("envoy")) == 4 }, "changed ShutdownProfile envoy (4s) applied")
	eventually(t, func() bool {
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(sp), sp)
		for _, c := range sp.Status.Conditions {
			if c.Type == "Accepted" && c.Status == metav1.ConditionTrue && c.ObservedGeneration == sp.Generation {
				return true
			}
		}
		return false
	}, "status condition Accepted=True for the current generation")
}

var counter int

func newName(base string) string {
	counter++
	return base + "-" + strconv.Itoa(counter)
}

func eventually(t *testing.T, f func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for: %s", what)
}

// A namespace's lastcall annotations reach admission shortly after they change, without a restart: the
// webhook follows namespaces with a watch, not a lookup per admission.
func TestNamespaceChangesApply(t *testing.T) {
	ctx := context.Background()
	namespace(t, "ns-defaults", map[string]string{mutate.LabelInject: "enabled"})
	grace := func() int64 {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: newName("app"), Namespace: "ns-defaults"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}}}
		if err := k8s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if g := p.Spec.TerminationGracePeriodSeconds; g != nil {
			return *g
		}
		return -1
	}
	// The policy's default profile, http, drains in well under a minute.
	before := grace()
	if before <= 0 || before > 60 {
		t.Fatalf("terminationGracePeriodSeconds = %d with the http default, want 1-60", before)
	}
	setDefault := func(profile string) {
		t.Helper()
		var ns corev1.Namespace
		if err := k8s.Get(ctx, client.ObjectKey{Name: "ns-defaults"}, &ns); err != nil {
			t.Fatal(err)
		}
		if profile == "" {
			delete(ns.Annotations, mutate.AnnotationDefaultProfile)
		} else {
			if ns.Annotations == nil {
				ns.Annotations = map[string]string{}
			}
			ns.Annotations[mutate.AnnotationDefaultProfile] = profile
		}
		if err := k8s.Update(ctx, &ns); err != nil {
			t.Fatal(err)
		}
	}
	// celery workers get 600s to finish their tasks.
	setDefault("celery")
	eventually(t, func() bool { return grace() > 600 }, "namespace default-profile celery applied")
	setDefault("")
	eventually(t, func() bool { return grace() == before }, "namespace default-profile removed")
}
