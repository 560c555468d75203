package mutate_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// typicalPod is the "typical two-container pod" of the engine bar (docs/design.md#bars): nginx in front of php-fpm, a few env vars,
// mounts and labels, as a Deployment's ReplicaSet would create it.
func typicalPod() *corev1.Pod {
	mounts := []corev1.VolumeMount{{Name: "sock", MountPath: "/run/php"}, {Name: "conf", MountPath: "/etc/app"}}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-7d9f8-abcde", Namespace: "shop", GenerateName: "shop-7d9f8-",
			Labels:      map[string]string{"app": "shop", "pod-template-hash": "7d9f8"},
			Annotations: map[string]string{"prometheus.io/scrape": "true"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				{Name: "web", Image: "nginx:1.27", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, VolumeMounts: mounts},
				{Name: "php", Image: "php:8.3-fpm", Env: []corev1.EnvVar{{Name: "APP_ENV", Value: "prod"}, {Name: "DB_HOST", Value: "db"}}, VolumeMounts: mounts},
			},
			Volumes: []corev1.Volume{{Name: "sock", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "shop"}}}}},
		},
	}
}

// Bar (docs/design.md#bars): <= 20 µs and <= 150 allocations per typical two-container pod.
func BenchmarkMutateTypicalPod(b *testing.B) {
	e := mutate.New(mutate.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "bench"})
	cat := profiles.Builtins()
	ns := mutate.Namespace{Name: "shop", Labels: map[string]string{mutate.LabelInject: "enabled"}}
	pod := typicalPod()
	b.ReportAllocs()
	for b.Loop() {
		res := e.Mutate(pod, ns, cat)
		if res.Skip != nil {
			b.Fatal(res.Skip.Message)
		}
	}
}

// The allocation half of the engine bar is deterministic, so it is a test; the time half is the benchmark.
func TestMutateAllocationBar(t *testing.T) {
	e := mutate.New(mutate.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "bench"})
	cat := profiles.Builtins()
	ns := mutate.Namespace{Name: "shop"}
	pod := typicalPod()
	if n := testing.AllocsPerRun(200, func() { e.Mutate(pod, ns, cat) }); n > 150 {
		t.Fatalf("Mutate allocates %.0f times per typical pod; the bar is 150", n)
	}
}
