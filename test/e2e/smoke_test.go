//go:build e2e

package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
	"github.com/lastcall-dev/lastcall/test/e2e/scenario"
)

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{
		BuildLastcall: true,
		ImageTargets:  []string{"base", "testapp", "lastcall", "traefik"},
		Images:        append([]string{framework.ImageDebianWeb, framework.ImageDebianWorker, framework.ImageTestapp, scenario.ImageTraefik}, framework.LastcallImages()...),
		Setup: func(ctx context.Context, env *framework.Env) error {
			return env.InstallLastcall(ctx)
		},
	}))
}

func smokePod(name, image string, command []string, port int, path string) *corev1.Pod {
	grace := int64(5)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			DNSPolicy:                     corev1.DNSDefault, // no cluster DNS on the local cluster
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:            name,
				Image:           image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         command,
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(int32(port))}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// A pod from the Debian image runs nginx, becomes Ready and serves on its pod IP.
func TestSmokeNginx(t *testing.T) {
	env := framework.Current(t)
	ctx := context.Background()
	ns := env.Namespace(t, nil)
	pod := smokePod("nginx", framework.ImageDebianWeb, []string{"nginx", "-g", "daemon off;"}, 80, "/")
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	p, err := env.WaitForPodReady(ctx, ns, "nginx", 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("nginx Ready after %.1fs at %s", time.Since(t0).Seconds(), p.Status.PodIP)
	code, body, err := env.PodHTTPGet(ctx, p, 80, "/")
	if err != nil || code != 200 || !strings.Contains(body, "nginx") {
		t.Fatalf("GET / on the nginx pod: code %d, err %v, body %.200q", code, err, body)
	}
}

// The testapp image holds only a static binary (the distroless case): it runs and serves, and has no shell.
func TestSmokeDistrolessTestapp(t *testing.T) {
	env := framework.Current(t)
	ctx := context.Background()
	ns := env.Namespace(t, nil)
	pod := smokePod("testapp", framework.ImageTestapp, nil, 8080, "/healthz")
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := env.WaitForPodReady(ctx, ns, "testapp", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := env.PodHTTPGet(ctx, p, 8080, "/slow?ms=50")
	if err != nil || code != 200 || !strings.HasPrefix(body, "slow 50 ms") {
		t.Fatalf("GET /slow on testapp: code %d, err %v, body %q", code, err, body)
	}
	if out, err := env.Kubectl(ctx, "exec", "-n", ns, "testapp", "--", "/bin/sh", "-c", "true"); err == nil {
		t.Fatalf("the testapp image has a shell; want a distroless image (output %q)", out)
	}
}
