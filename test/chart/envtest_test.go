package chart_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	lastcallv1alpha1 "github.com/lastcall-dev/lastcall/api/v1alpha1"
)

// One kube-apiserver + etcd for the whole package, started on first use and stopped by TestMain.
var (
	envOnce sync.Once
	env     *envtest.Environment
	envCfg  *rest.Config
	envErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		_ = env.Stop()
	}
	os.Exit(code)
}

// apiserver returns a config for the shared envtest apiserver, with the CRD from config/crd/bases installed.
func apiserver(t testing.TB) *rest.Config {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = cacheBin()
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			missing(t, bin+" not found in "+assets+" (KUBEBUILDER_ASSETS)")
		}
	}
	envOnce.Do(func() {
		env = &envtest.Environment{
			BinaryAssetsDirectory: assets,
			CRDDirectoryPaths:     []string{filepath.Join(repoRoot(t), "config", "crd", "bases")},
			ErrorIfCRDPathMissing: true,
		}
		envCfg, envErr = env.Start()
	})
	if envErr != nil {
		t.Fatalf("start envtest (kube-apiserver + etcd from %s): %v", assets, envErr)
	}
	return envCfg
}

func newClient(t testing.TB, cfg *rest.Config) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := lastcallv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func profileFromYAML(t testing.TB, doc string) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte("apiVersion: lastcall.dev/v1alpha1\nkind: ShutdownProfile\n"+doc), &m); err != nil {
		t.Fatalf("bad test YAML: %v\n%s", err, doc)
	}
	return &unstructured.Unstructured{Object: m}
}

func TestShutdownProfileValidation(t *testing.T) {
	cfg := apiserver(t)
	c := newClient(t, cfg)
	ctx := context.Background()

	t.Run("accepts", func(t *testing.T) {
		for _, tc := range []struct{ name, doc string }{
			{"an override of a built-in with one field", `
metadata: {name: nginx}
spec: {drainDelay: 15s}`},
			{"an override of a built-in with no spec", `
metadata: {name: celery}`},
			{"a new profile with every field", `
metadata: {name: unicorn}
spec:
  description: Ruby unicorn
  drainDelay: 1m30s
  stopSignal: SIGQUIT
  drainTimeout: 1h
  checks: [php-fpm-process-control-timeout]
  match: {images: ["*unicorn*", "ruby:*unicorn*"], commands: [unicorn, unicorn_rails]}
  supervise: true`},
			{"a signal without the SIG prefix and a zero delay", `
metadata: {name: haproxy-internal}
spec: {stopSignal: USR1, drainDelay: "0", drainTimeout: 1s}`},
			{"the largest delay", `
metadata: {name: slow-lb}
spec: {stopSignal: TERM, drainDelay: 10m}`},
			{"an empty checks list that switches the built-in checks off", `
metadata: {name: php-fpm}
spec: {checks: []}`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				obj := profileFromYAML(t, tc.doc)
				if err := c.Create(ctx, obj); err != nil {
					t.Fatalf("create refused: %v", err)
				}
				t.Cleanup(func() { _ = c.Delete(ctx, obj) })
				// Read it back typed: the schema and the Go types agree.
				var sp lastcallv1alpha1.ShutdownProfile
				if err := c.Get(ctx, client.ObjectKey{Name: obj.GetName()}, &sp); err != nil {
					t.Fatalf("get typed: %v", err)
				}
			})
		}
	})

	t.Run("accepts the samples in config/samples", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join(repoRoot(t), "config", "samples", "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, obj := range decodeAll(t, string(raw)) {
				n++
				if err := c.Create(ctx, obj, client.DryRunAll); err != nil {
					t.Errorf("%s: %v", filepath.Base(f), err)
				}
			}
		}
		if n < 3 {
			t.Errorf("found %d samples, want at least 3", n)
		}
	})

	t.Run("refuses", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			doc  string
			want []string // every string must appear in the error
		}{
			{"an unparsable drainDelay", `
metadata: {name: bad-delay}
spec: {stopSignal: TERM, drainDelay: 5 seconds}`, []string{"spec.drainDelay"}},
			{"a drainDelay above 10m", `
metadata: {name: long-delay}
spec: {stopSignal: TERM, drainDelay: 11m}`, []string{"spec.drainDelay", "drainDelay must be between 0s and 10m"}},
			{"a negative drainDelay", `
metadata: {name: negative-delay}
spec: {stopSignal: TERM, drainDelay: -5s}`, []string{"spec.drainDelay"}},
			{"a drainTimeout above 1h", `
metadata: {name: long-timeout}
spec: {stopSignal: TERM, drainTimeout: 2h}`, []string{"spec.drainTimeout", "drainTimeout must be between 1s and 1h"}},
			{"a drainTimeout below 1s", `
metadata: {name: short-timeout}
spec: {stopSignal: TERM, drainTimeout: 500ms}`, []string{"spec.drainTimeout", "drainTimeout must be between 1s and 1h"}},
			{"a drainTimeout of 0", `
metadata: {name: zero-timeout}
spec: {stopSignal: TERM, drainTimeout: "0"}`, []string{"spec.drainTimeout"}},
			{"an unknown signal", `
metadata: {name: kill}
spec: {stopSignal: SIGKILL}`, []string{"spec.stopSignal", `Unsupported value: "SIGKILL"`}},
			{"a lowercase signal", `
metadata: {name: lower}
spec: {stopSignal: sigquit}`, []string{"spec.stopSignal"}},
			{"an unknown check", `
metadata: {name: bad-check}
spec: {stopSignal: QUIT, checks: [php-fpm-ping]}`, []string{"spec.checks[0]", `Unsupported value: "php-fpm-ping"`}},
			{"an empty image pattern", `
metadata: {name: empty-image}
spec: {stopSignal: QUIT, match: {images: [""]}}`, []string{"spec.match.images[0]"}},
			{"a blank command pattern", `
metadata: {name: blank-command}
spec: {stopSignal: QUIT, match: {commands: ["  "]}}`, []string{"spec.match.commands[0]"}},
			{"too many image patterns", `
metadata: {name: many-images}
spec: {stopSignal: QUIT, match: {images: [` + strings.TrimSuffix(strings.Repeat("a,", 33), ",") + `]}}`, []string{"spec.match.images", "must have at most 32 items"}},
			{"a description longer than 256 characters", `
metadata: {name: long-description}
spec: {stopSignal: QUIT, description: ` + strings.Repeat("x", 257) + `}`, []string{"spec.description", "256"}},
			{"a new profile without stopSignal", `
metadata: {name: nosignal}
spec: {drainTimeout: 30s}`, []string{"spec.stopSignal", "required for a profile that does not override a built-in"}},
			{"a name that is not a DNS label", `
metadata: {name: my.profile}
spec: {stopSignal: TERM}`, []string{"metadata.name must be a DNS label"}},
			{"the reserved name none", `
metadata: {name: none}
spec: {stopSignal: TERM}`, []string{"metadata.name: 'none' and 'auto' are reserved"}},
			{"the reserved name auto", `
metadata: {name: auto}
spec: {stopSignal: TERM}`, []string{"metadata.name: 'none' and 'auto' are reserved"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				obj := profileFromYAML(t, tc.doc)
				err := c.Create(ctx, obj)
				if err == nil {
					_ = c.Delete(ctx, obj)
					t.Fatalf("created, want a refusal mentioning %q", tc.want)
				}
				if !apierrors.IsInvalid(err) {
					t.Errorf("want an Invalid error, got %v", err)
				}
				t.Logf("refused: %v", err)
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error does not mention %q:\n%v", w, err)
					}
				}
				// A CEL rule that fails at runtime (duration() of an unparsable string) buries the real message.
				if strings.Contains(err.Error(), "evaluating rule") {
					t.Errorf("a CEL rule failed at runtime instead of being guarded:\n%v", err)
				}
			})
		}
	})

	t.Run("status subresource accepts the Accepted condition", func(t *testing.T) {
		sp := &lastcallv1alpha1.ShutdownProfile{
			ObjectMeta: metav1.ObjectMeta{Name: "status-check"},
			Spec:       lastcallv1alpha1.ShutdownProfileSpec{StopSignal: "SIGQUIT"},
		}
		if err := c.Create(ctx, sp); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(ctx, sp) })
		sp.Status.ObservedGeneration = sp.Generation
		sp.Status.Conditions = []metav1.Condition{{
			Type: lastcallv1alpha1.ConditionAccepted, Status: metav1.ConditionFalse,
			Reason: lastcallv1alpha1.ReasonInvalid, Message: `match.images[0] "[": bad glob`,
			LastTransitionTime: metav1.NewTime(time.Now().Truncate(time.Second)),
		}}
		if err := c.Status().Update(ctx, sp); err != nil {
			t.Fatalf("status update: %v", err)
		}
		var got lastcallv1alpha1.ShutdownProfile
		if err := c.Get(ctx, client.ObjectKey{Name: sp.Name}, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Reason != lastcallv1alpha1.ReasonInvalid {
			t.Errorf("status not stored: %+v", got.Status)
		}
	})
}

// TestChartObjectsAcceptedByAPIServer creates every object the chart renders with default values, and every
// object of config/default, with a server-side dry run: the apiserver's own validation (and the
// MutatingWebhookConfiguration's CEL matchConditions compilation) accepts them. Objects that already exist (the
// CRD envtest installed, the namespace) are server-side applied instead (dry run too).
// The namespace enforces the restricted Pod Security profile, so the Deployment's pod template must pass it
// (reported as warnings on a workload, which fail the test).
func TestChartObjectsAcceptedByAPIServer(t *testing.T) {
	cfg := rest.CopyConfig(apiserver(t))
	warnings := &warningRecorder{}
	cfg.WarningHandler = warnings
	c := newClient(t, cfg)
	ctx := context.Background()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	for _, source := range []struct {
		name string
		objs func() []*unstructured.Unstructured
	}{
		{"helm chart (default values)", func() []*unstructured.Unstructured { return decodeAll(t, helmTemplate(t)) }},
		{"kustomize config/default", func() []*unstructured.Unstructured { return decodeAll(t, kustomize(t, "config/default")) }},
	} {
		t.Run(source.name, func(t *testing.T) {
			objs := source.objs()
			if len(objs) < 10 {
				t.Fatalf("only %d objects rendered", len(objs))
			}
			for _, o := range objs {
				t.Run(o.GetKind()+"/"+o.GetName(), func(t *testing.T) {
					warnings.reset()
					err := c.Create(ctx, o.DeepCopy(), client.DryRunAll)
					if apierrors.IsAlreadyExists(err) {
						// The CRD (installed by envtest) and the namespace exist: server-side apply them instead.
						o.SetManagedFields(nil)
						err = c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner("chart-test"), client.ForceOwnership, client.DryRunAll)
					}
					if err != nil {
						t.Fatalf("dry-run refused: %v", err)
					}
					if w := warnings.get(); len(w) > 0 {
						t.Errorf("apiserver warnings: %s", strings.Join(w, "; "))
					}
				})
			}
		})
	}
}

// TestPodSecurityWarnsInEnvtest proves TestChartObjectsAcceptedByAPIServer's warning check can fail: a
// privileged Deployment in the same namespace draws a Pod Security warning.
func TestPodSecurityWarnsInEnvtest(t *testing.T) {
	cfg := rest.CopyConfig(apiserver(t))
	warnings := &warningRecorder{}
	cfg.WarningHandler = warnings
	c := newClient(t, cfg)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "psa-check", Labels: map[string]string{
		"pod-security.kubernetes.io/warn": "restricted",
	}}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: root, namespace: psa-check}
spec:
  selector: {matchLabels: {app: root}}
  template:
    metadata: {labels: {app: root}}
    spec:
      containers: [{name: c, image: busybox, securityContext: {privileged: true}}]
`), &obj.Object); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, obj, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if len(warnings.get()) == 0 {
		t.Fatal("no Pod Security warning for a privileged Deployment: the apiserver does not run PodSecurity admission, so the chart's pod template is not checked against the restricted profile")
	}
}

type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningRecorder) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = nil
}

func (w *warningRecorder) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}
