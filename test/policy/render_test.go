package policy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/internal/cli"
	"github.com/lastcall-dev/lastcall/internal/testenv"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

// kubeconfig writes a kubeconfig for the envtest API server, as a user of `lastcall --kubeconfig` has one.
func kubeconfig(t *testing.T) string {
	t.Helper()
	c := clientcmdapi.NewConfig()
	c.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	c.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	c.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	file := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*c, file); err != nil {
		t.Fatal(err)
	}
	return file
}

// `lastcall policy render --from-cluster` against a real API server, through the real kubectl: the cluster's
// ShutdownProfiles are in the policies it renders (a pod matching one gets it), the ones policy mode cannot
// compile are named and left out (exit 1), and what it renders is accepted and enforced by the API server.
func TestRenderFromCluster(t *testing.T) {
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		if testenv.RequireReal() {
			t.Fatalf("kubectl: %v (hack/build-k8s.sh builds it)", err)
		}
		t.Skipf("kubectl: %v", err)
	}
	ctx := context.Background()
	dur := func(s string) *metav1.Duration {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return &metav1.Duration{Duration: d}
	}
	profiles := []*v1alpha1.ShutdownProfile{
		{ObjectMeta: metav1.ObjectMeta{Name: "render-app"}, Spec: v1alpha1.ShutdownProfileSpec{StopSignal: "SIGTERM", DrainDelay: dur("7s"),
			Match: &v1alpha1.ProfileMatch{Images: []string{"render-app*"}}}},
		// Accepted by the API server and the webhook; not by policy mode (CEL durations are in milliseconds).
		{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: v1alpha1.ShutdownProfileSpec{DrainDelay: dur("1500us")}},
		// A new profile policy mode cannot compile either: pods it would get fall back.
		{ObjectMeta: metav1.ObjectMeta{Name: "render-slow"}, Spec: v1alpha1.ShutdownProfileSpec{StopSignal: "SIGTERM", DrainTimeout: dur("2000500us"),
			Match: &v1alpha1.ProfileMatch{Images: []string{"render-slow*"}}}},
	}
	for _, sp := range profiles {
		if err := k8s.Create(ctx, sp); err != nil {
			t.Fatalf("ShutdownProfile/%s: %v", sp.Name, err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), sp) })
	}

	var out, errOut bytes.Buffer
	code := cli.Run([]string{"policy", "render", "--from-cluster", "--kubectl", kubectl, "--kubeconfig", kubeconfig(t), "--context", "envtest", "--name", "from-cluster"}, nil, &out, &errOut)
	t.Logf("stderr:\n%s", errOut.String())
	if code != cli.ExitFindings {
		t.Fatalf("exit %d, want %d (two ShutdownProfiles left out)", code, cli.ExitFindings)
	}
	for _, want := range []string{
		"lastcall: error: ShutdownProfile/nginx (in the cluster): drainDelay 1.5ms: policy mode renders durations with millisecond precision: left out of the rendering (the built-in nginx is rendered as built in)",
		"lastcall: error: ShutdownProfile/render-slow (in the cluster): drainTimeout 2.0005s: policy mode renders durations with millisecond precision",
		"lastcall: error: 2 ShutdownProfile(s) left out",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if strings.Contains(errOut.String(), "render-app") {
		t.Error("render-app was reported")
	}

	sel := &metav1.LabelSelector{MatchLabels: map[string]string{setLabel: "from-cluster"}}
	apply(t, out.Bytes(), sel)
	t.Cleanup(func() {
		// The policies, so that tests after this one see only their own.
		for _, doc := range strings.Split(out.String(), "\n---\n") {
			u := &unstructured.Unstructured{}
			if yaml.Unmarshal([]byte(doc), &u.Object) == nil && u.GetKind() != "" {
				_ = k8s.Delete(context.Background(), u)
			}
		}
	})
	namespace(t, "from-cluster", map[string]string{setLabel: "from-cluster", mutate.LabelInject: "enabled"}, nil)
	pod := func(name, image string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "from-cluster"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, _, err := create(pod("probe", "nginx:1.27"), true)
		if err == nil && got.Annotations[mutate.AnnotationInjected] != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rendered policies not active after 60s (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// What the webhook's engine does with the ShutdownProfiles that were not left out.
	catalog, errs := v1alpha1.Catalog([]v1alpha1.ShutdownProfile{*profiles[0]})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	eng := mutate.New(mutate.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "test"})
	for _, tc := range []struct{ image, injected string }{
		{"example.com/render-app:1", "app=render-app"}, // the cluster's profile, by its image rule
		{"nginx:1.27", "app=nginx"},                    // the built-in nginx, not the override that was left out
		{"example.com/other:1", "app=http"},
	} {
		p := pod("p", tc.image)
		got, _, err := create(p, true)
		if err != nil {
			t.Fatalf("%s: %v", tc.image, err)
		}
		res := eng.Mutate(p, mutate.Namespace{Name: p.Namespace, Labels: map[string]string{mutate.LabelInject: "enabled"}}, catalog)
		if res.Pod == nil {
			t.Fatalf("%s: the engine did not inject", tc.image)
		}
		wantGrace := *res.Pod.Spec.TerminationGracePeriodSeconds
		if got.Annotations[mutate.AnnotationInjected] != tc.injected || *got.Spec.TerminationGracePeriodSeconds != wantGrace {
			t.Errorf("%s: injected %q, grace %d; want %q, %d (the engine's)", tc.image, got.Annotations[mutate.AnnotationInjected], *got.Spec.TerminationGracePeriodSeconds, tc.injected, wantGrace)
		}
	}
}
