package policy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
)

// setLabel selects the namespaces of one compiled policy set (the tests install several at once).
const setLabel = "policy-test.lastcall.dev/set"

// install compiles o, points the bindings at namespaces labelled setLabel=set, creates the objects (Fail,
// so a CEL error fails the test instead of passing silently) and waits until the API server enforces them.
func install(t *testing.T, set string, o policy.Options) {
	t.Helper()
	createSet(t, set, o)
	waitSet(t, set, o)
}

// createSet creates the objects of one set without waiting for them.
func createSet(t *testing.T, set string, o policy.Options) *policy.Policies {
	t.Helper()
	o.Name = "lc-" + set
	o.FailurePolicy = admissionregistrationv1.Fail
	ps, err := policy.Compile(o)
	if err != nil {
		t.Fatal(err)
	}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{setLabel: set}}
	ps.SetNamespaceSelector(sel)
	ctx := context.Background()
	for _, obj := range ps.Objects() {
		// A set is named by a hash of its rendering: one that exists (another test installed it) is this one.
		if err := k8s.Create(ctx, obj.(client.Object)); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %T: %v", obj, err)
		}
	}
	namespace(t, "probe-"+set, map[string]string{setLabel: set, mutate.LabelInject: "enabled"}, nil)
	return ps
}

// waitSet waits until the API server enforces a set.
func waitSet(t *testing.T, set string, o policy.Options) {
	t.Helper()
	probeNS := "probe-" + set
	// The API server loads policies asynchronously: wait until a probe pod is mutated by each mutating policy
	// and warned about.
	deadline := time.Now().Add(30 * time.Second)
	for {
		good := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: probeNS},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}
		bad := good.DeepCopy()
		bad.Annotations = map[string]string{mutate.AnnotationDrainDelay: "soonish"}
		// A per-container annotation takes the general mutating policy, the probe without the plain one.
		general := good.DeepCopy()
		general.Annotations = map[string]string{mutate.AnnotationProfile + ".web": "nginx"}
		got, _, err := create(good, true)
		gotGeneral, _, errGeneral := create(general, true)
		_, warnings, badErr := create(bad, true)
		validating := len(warnings) > 0
		if o.Policy.Strict {
			validating = badErr != nil && strings.Contains(badErr.Error(), "strict mode")
		}
		if err == nil && got.Annotations[mutate.AnnotationInjected] != "" && errGeneral == nil && gotGeneral.Annotations[mutate.AnnotationInjected] != "" && validating {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy set %s not active after 30s: err %v / %v, warnings %q, annotations %v", set, err, badErr, warnings, got.Annotations)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func namespace(t *testing.T, name string, labels, annotations map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations}}
	if err := k8s.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

type warningRecorder struct {
	mu  sync.Mutex
	got []string
}

func (w *warningRecorder) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, text)
}

// create creates the pod (server-side dry run when dryRun) and returns the stored pod and the warnings with
// the API server's policy prefix removed.
func create(p *corev1.Pod, dryRun bool) (*corev1.Pod, []string, error) {
	rec := &warningRecorder{}
	c := *cfg
	c.WarningHandler = rec
	cs, err := kubernetes.NewForConfig(&c)
	if err != nil {
		return nil, nil, err
	}
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	got, err := cs.CoreV1().Pods(p.Namespace).Create(context.Background(), p, opts)
	out := make([]string, 0, len(rec.got))
	for _, w := range rec.got {
		out = append(out, stripPolicyPrefix(w))
	}
	if got == nil {
		got = &corev1.Pod{}
	}
	return got, out, err
}

// stripPolicyPrefix removes "Validation failed for ValidatingAdmissionPolicy 'x' with binding 'y': ".
func stripPolicyPrefix(w string) string {
	if strings.HasPrefix(w, "Validation failed for ValidatingAdmissionPolicy") {
		if i := strings.Index(w, "': "); i >= 0 {
			return w[i+3:]
		}
	}
	return w
}
