// Package memory measures the webhook binary's resident memory with a large cluster's worth of cached objects:
// 10,000 namespaces, 100 ShutdownProfiles and 10,000 running managed pods (watched by the shutdown observer) on
// a real kube-apiserver. Bar (docs/design.md#bars): RSS <= 64 MiB.
package memory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/internal/testenv"
)

const (
	namespaces  = 10000
	profiles    = 100
	managedPods = 10000
	barMiB      = 64
)

func TestWebhookRSSWithLargeCache(t *testing.T) {
	// A measurement, not a correctness test: it needs a quiet machine (RSS moves with GC timing by a few MiB),
	// so `make bench` runs it and `make test` does not.
	if os.Getenv("LASTCALL_BENCH") != "1" {
		t.Skip("set LASTCALL_BENCH=1 (make bench) to measure the webhook's memory")
	}
	testenv.Check(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "lastcall-webhook")
	// Built as the Makefile and the image build it.
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "../../cmd/webhook")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	env := testenv.Environment()
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	cfg.QPS, cfg.Burst = 5000, 5000
	k8s, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	parallel(t, nsCount(), func(i int) error {
		// Labels and annotations like real namespaces carry; the webhook keeps only lastcall's.
		return k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-" + strconv.Itoa(i),
			Labels:      map[string]string{"lastcall.dev/inject": "enabled", "team": "t" + strconv.Itoa(i%50), "env": "prod"},
			Annotations: map[string]string{"lastcall.dev/default-profile": "http", "owner": "someone@example.com", "cost-center": strconv.Itoa(i), "kubectl.kubernetes.io/last-applied-configuration": lastApplied}}})
	})
	parallel(t, profiles, func(i int) error {
		d := metav1.Duration{Duration: time.Duration(i%10+1) * time.Second}
		return k8s.Create(ctx, &v1alpha1.ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "profile-" + strconv.Itoa(i)},
			Spec: v1alpha1.ShutdownProfileSpec{StopSignal: "SIGTERM", DrainDelay: &d, Description: "generated for the memory test",
				Match: &v1alpha1.ProfileMatch{Images: []string{"img-" + strconv.Itoa(i)}}}})
	})
	t.Logf("created %d namespaces and %d profiles in %s", namespaces, profiles, time.Since(start).Round(time.Second))
	start = time.Now()
	pods := podCount()
	parallel(t, pods, func(i int) error {
		return k8s.Create(ctx, managedPod(i))
	})
	t.Logf("created %d managed pods in %s", pods, time.Since(start).Round(time.Second))

	user, err := env.ControlPlane.AddUser(envtest.User{Name: "lastcall", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	certDir := filepath.Join(dir, "certs")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	writeCert(t, certDir)
	probe, _ := testenv.FreeAddr()
	metrics, _ := testenv.FreeAddr()
	port := freePort(t)
	// --namespace: the observer's Lease lives there; without it the observer is off.
	cmd := exec.Command(bin, "--cert-mode=external", "--namespace=default", "--cert-dir="+certDir, "--port="+strconv.Itoa(port),
		"--health-probe-bind-address="+probe, "--metrics-bind-address="+metrics, "--config="+filepath.Join(dir, "none.yaml"))
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	if err := testenv.WaitReady(probe, nil, 90*time.Second); err != nil {
		t.Fatalf("%v:\n%s", err, logs.String())
	}
	if pods > 0 {
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(logs.String(), "observing shutdowns of managed pods") {
			if time.Now().After(deadline) {
				t.Fatalf("the observer never started:\n%s", logs.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// Let the informers' initial lists settle and the runtime return what it no longer uses.
	time.Sleep(5 * time.Second)
	rss := rssKiB(t, cmd.Process.Pid)
	if resp, err := http.Get("http://" + metrics + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "go_memstats_heap_inuse_bytes") || strings.HasPrefix(line, "go_memstats_sys_bytes") || strings.HasPrefix(line, "go_memstats_heap_idle_bytes ") || strings.HasPrefix(line, "go_memstats_heap_released_bytes") {
				t.Log(line)
			}
		}
	}
	t.Logf("lastcall-webhook RSS %.1f MiB with %d namespaces, %d ShutdownProfiles and %d managed pods (bar %d MiB)", float64(rss)/1024, nsCount(), profiles, pods, barMiB)
	if rss > barMiB*1024 {
		t.Fatalf("RSS %.1f MiB exceeds the %d MiB bar", float64(rss)/1024, barMiB)
	}
	if !strings.Contains(logs.String(), "profile catalog updated") {
		t.Fatalf("the webhook never loaded the profiles:\n%s", logs.String())
	}
}

func parallel(t *testing.T, n int, f func(int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func freePort(t *testing.T) int {
	a, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(a[strings.LastIndexByte(a, ':')+1:])
	return p
}

func writeCert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	_ = os.MkdirAll(dir, 0o700)
	_ = os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

// lastApplied stands for the kubectl annotation most real namespaces carry (about 1 KiB).
var lastApplied = strings.Repeat(`{"apiVersion":"v1","kind":"Namespace","metadata":{"labels":{"team":"x"}}}`, 14)

// nsCount lets a developer measure the baseline (LASTCALL_MEM_NAMESPACES=0).
func nsCount() int {
	if v, err := strconv.Atoi(os.Getenv("LASTCALL_MEM_NAMESPACES")); err == nil {
		return v
	}
	return namespaces
}

// podCount lets a developer measure without the observer's pods (LASTCALL_MEM_PODS=0).
func podCount() int {
	if v, err := strconv.Atoi(os.Getenv("LASTCALL_MEM_PODS")); err == nil {
		return v
	}
	return managedPods
}

// managedPod is a running pod as lastcall leaves it (shim init container, preStop hooks, record, managed
// label) with what a real Deployment's pod carries besides: owner, labels, env, resources, mounts. The node
// does not exist: the pod stays as created.
func managedPod(i int) *corev1.Pod {
	yes := true
	grace := int64(32)
	ns := "team-" + strconv.Itoa(i%max(nsCount(), 1))
	if nsCount() == 0 {
		ns = "default"
	}
	app := func(name, image string) corev1.Container {
		return corev1.Container{Name: name, Image: image,
			Env:          []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "DB_HOST", Value: "db.example.internal"}, {Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			Resources:    corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resourceMust("100m"), corev1.ResourceMemory: resourceMust("128Mi")}},
			VolumeMounts: []corev1.VolumeMount{{Name: "lastcall-bin", MountPath: "/lastcall/bin", ReadOnly: true}, {Name: "config", MountPath: "/etc/app"}},
			Lifecycle:    &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/lastcall/bin/lastcall-shim", "prestop", "--delay", "5s", "--signal", "SIGQUIT", "--timeout", "25s"}}}},
			Ports:        []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("web-7c9d8f6b5-%05d", i), Namespace: ns,
			Labels:          map[string]string{"app": "web", "pod-template-hash": "7c9d8f6b5", "lastcall.dev/managed": "inject", "team": "t" + strconv.Itoa(i%50)},
			Annotations:     map[string]string{"lastcall.dev/injected": "nginx=nginx,php=php-fpm", "lastcall.dev/version": "v0.1.0", "prometheus.io/scrape": "true"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7c9d8f6b5", UID: "00000000-0000-0000-0000-000000000001", Controller: &yes, BlockOwnerDeletion: &yes}},
		},
		Spec: corev1.PodSpec{
			NodeName:                      "node-" + strconv.Itoa(i%20),
			TerminationGracePeriodSeconds: &grace,
			InitContainers: []corev1.Container{{Name: "lastcall-shim", Image: "ghcr.io/lastcall-dev/lastcall-shim:v0.1.0", Command: []string{"/usr/local/bin/lastcall-shim", "install", "/lastcall/bin"},
				VolumeMounts: []corev1.VolumeMount{{Name: "lastcall-bin", MountPath: "/lastcall/bin"}}}},
			Containers: []corev1.Container{app("nginx", "nginx:1.27"), app("php", "php:8.3-fpm")},
			Volumes: []corev1.Volume{{Name: "lastcall-bin", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}}},
		},
	}
}

func resourceMust(v string) resource.Quantity { return resource.MustParse(v) }
