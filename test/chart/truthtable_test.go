package chart_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// TestSelectionTruthTable runs every row of the selection table (pkg/mutate/keys.go) through the chart's
// webhook configuration on a real kube-apiserver and through the engine, and requires them to agree: the
// API server calls the webhook exactly for the pods the engine does not skip as a whole. It also holds the
// not-already-handled matchCondition to its promise: a pod the engine already handled, with the same
// containers, is not sent again (and the engine would change nothing in it); a pod with a container the
// record does not name is.
func TestSelectionTruthTable(t *testing.T) {
	c := newClient(t, apiserver(t))
	ctx := context.Background()
	rec := startRecorder(t)
	const nsName = "truth-table"
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: nsName}, ns); apierrors.IsNotFound(err) {
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName, Labels: map[string]string{mutate.LabelInject: "enabled"}}}
		if err := c.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	mwc := find(t, decodeAll(t, helmTemplate(t)), "MutatingWebhookConfiguration", releaseName)
	mwc.SetName("truth-table-test")
	pointAt(t, mwc, rec)
	if err := c.Create(ctx, mwc); err != nil {
		t.Fatalf("install the chart's webhook configuration: %v", err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, mwc) })

	eng := mutate.New(mutate.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "test"})
	cat := profiles.Builtins()
	engineNS := mutate.Namespace{Name: nsName, Labels: ns.Labels}
	base := func() *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: nsName},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}, {Name: "php", Image: "php:8.3-fpm"}}}}
	}
	type row struct {
		name string
		pod  *corev1.Pod
	}
	var rows []row
	for _, v := range []string{"false", "False", "FALSE", " false ", "no", "No", "NO", "off", "Off", "disabled", "Disabled", "0",
		"true", "True", "yes", "on", "enabled", "1", "", "nope", "falsey", "n", "f"} {
		p := base()
		p.Annotations = map[string]string{mutate.AnnotationInject: v}
		rows = append(rows, row{fmt.Sprintf("annotation inject=%q", v), p})
	}
	for _, v := range []string{"disabled", "Disabled", "false", "enabled", ""} {
		p := base()
		p.Labels = map[string]string{mutate.LabelInject: v}
		rows = append(rows, row{fmt.Sprintf("label inject=%q", v), p})
	}
	win := base()
	win.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
	linux := base()
	linux.Spec.OS = &corev1.PodOS{Name: corev1.Linux}
	mirror := base()
	mirror.Annotations = map[string]string{"kubernetes.io/config.mirror": "x"}
	mirror.Spec.NodeName = "node-1"
	rows = append(rows, row{"windows", win}, row{"linux", linux}, row{"mirror pod", mirror}, row{"plain", base()})

	// Already handled: the engine's own output, as the API server would reinvoke it.
	handled := eng.Mutate(base(), engineNS, cat).Pod
	withToken := handled.DeepCopy() // what the ServiceAccount plugin does before the reinvocation
	for i := range withToken.Spec.InitContainers {
		withToken.Spec.InitContainers[i].VolumeMounts = append(withToken.Spec.InitContainers[i].VolumeMounts,
			corev1.VolumeMount{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true})
	}
	withToken.Spec.Volumes = append(withToken.Spec.Volumes, corev1.Volume{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	extra := handled.DeepCopy() // another webhook added a container after lastcall
	extra.Spec.Containers = append(extra.Spec.Containers, corev1.Container{Name: "metrics", Image: "registry.example.com/metrics:1"})
	sidecar := handled.DeepCopy() // ... or a native sidecar
	always := corev1.ContainerRestartPolicyAlways
	sidecar.Spec.InitContainers = append(sidecar.Spec.InitContainers, corev1.Container{Name: "log-shipper", Image: "fluent/fluent-bit:3", RestartPolicy: &always})
	skippedSidecar := eng.Mutate(sidecar, engineNS, cat).Pod // the record now names it (as skipped)
	removed := handled.DeepCopy()
	removed.Spec.Containers = removed.Spec.Containers[:1]
	rows = append(rows, row{"already handled", handled}, row{"already handled, token mount added", withToken},
		row{"handled, then a container added", extra}, row{"handled, then a native sidecar added", sidecar},
		row{"handled including a skipped native sidecar", skippedSidecar}, row{"handled, then a container removed", removed})

	create := func(p *corev1.Pod) {
		t.Helper()
		if err := c.Create(ctx, p.DeepCopy(), client.DryRunAll); err != nil {
			t.Fatalf("dry-run create %s: %v", p.Name, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec.reset()
		create(base())
		if rec.seen(nsName + "/p") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the apiserver never called the webhook for a plain pod")
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, r := range rows {
		res := eng.Mutate(r.pod, engineNS, cat)
		podSkip := res.Skip != nil && res.Skip.Code != mutate.SkipNoContainers
		unchanged := equality.Semantic.DeepEqual(res.Pod.Spec, r.pod.Spec) && equality.Semantic.DeepEqual(res.Pod.Annotations, r.pod.Annotations)
		rec.reset()
		create(r.pod)
		called := rec.seen(nsName + "/p")
		switch {
		case podSkip && called:
			t.Errorf("%s: the engine skips the pod (%s) but the API server calls the webhook", r.name, res.Skip.Message)
		case !podSkip && !called && !unchanged:
			t.Errorf("%s: the engine would change the pod but the API server does not call the webhook", r.name)
		case !podSkip && !called:
			t.Logf("%s: not called; the engine agrees there is nothing to do", r.name)
		}
		if want := r.name == "plain" || r.name == "linux" || r.name == "handled, then a container added" || r.name == "handled, then a native sidecar added" || r.name == "handled, then a container removed"; want && !called {
			t.Errorf("%s: want a call", r.name)
		}
		if r.name == "already handled" || r.name == "already handled, token mount added" || r.name == "handled including a skipped native sidecar" {
			if called {
				t.Errorf("%s: the API server called lastcall again for a pod it already handled", r.name)
			}
			if !unchanged {
				t.Errorf("%s: the engine would still change the pod", r.name)
			}
		}
	}
}
