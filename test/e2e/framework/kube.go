//go:build e2e

package framework

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

var ctrlLogOnce sync.Once

// Namespace creates a namespace named after the test (plus a random suffix) with the given labels, waits for
// its default ServiceAccount, registers the failure dump and the deletion at test end, and returns its name.
func (e *Env) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	ns, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: dnsName(t.Name()) + "-", Labels: labels,
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	name := ns.Name
	t.Cleanup(func() {
		if t.Failed() {
			e.DumpOnFailure(t, name)
		}
		if err := e.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Logf("delete namespace %s: %v", name, err)
		}
	})
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := e.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s: default ServiceAccount not created within 30s", name)
	}
	return name
}

func dnsName(s string) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 40 {
		out = strings.Trim(out[:40], "-")
	}
	if out == "" {
		out = "e2e"
	}
	return out
}

// WaitForPod polls the pod until cond returns true, the pod fails, or the timeout passes; the error then says
// what the pod was doing (phase, container states, latest events).
func (e *Env) WaitForPod(ctx context.Context, ns, name string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := e.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, nil // transient; the timeout bounds it
		}
		last = p
		if cond(p) {
			return true, nil
		}
		if p.Status.Phase == corev1.PodFailed || (p.Status.Phase == corev1.PodSucceeded && what != "Succeeded") {
			return false, fmt.Errorf("pod %s/%s is %s", ns, name, p.Status.Phase)
		}
		return false, nil
	})
	if err != nil {
		return last, fmt.Errorf("waiting %v for pod %s/%s to be %s: %w; %s", timeout, ns, name, what, err, e.describePod(ctx, last))
	}
	return last, nil
}

// WaitForPodReady waits for the Ready condition.
func (e *Env) WaitForPodReady(ctx context.Context, ns, name string, timeout time.Duration) (*corev1.Pod, error) {
	return e.WaitForPod(ctx, ns, name, timeout, "Ready", func(p *corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
}

// WaitForPodRunning waits for phase Running with every container started.
func (e *Env) WaitForPodRunning(ctx context.Context, ns, name string, timeout time.Duration) (*corev1.Pod, error) {
	return e.WaitForPod(ctx, ns, name, timeout, "Running", func(p *corev1.Pod) bool {
		if p.Status.Phase != corev1.PodRunning {
			return false
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil {
				return false
			}
		}
		return true
	})
}

func (e *Env) describePod(ctx context.Context, p *corev1.Pod) string {
	if p == nil {
		return "pod never seen"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s", p.Status.Phase)
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case cs.State.Waiting != nil:
			fmt.Fprintf(&b, "; %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			fmt.Fprintf(&b, "; %s terminated: %s exit %d", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		case cs.State.Running != nil:
			fmt.Fprintf(&b, "; %s running (ready %v)", cs.Name, cs.Ready)
		}
	}
	evs, err := e.Client.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + p.Name,
	})
	if err == nil {
		n := len(evs.Items)
		for _, ev := range evs.Items[max(0, n-5):] {
			fmt.Fprintf(&b, "; event %s %s: %s", ev.Type, ev.Reason, ev.Message)
		}
	}
	return b.String()
}

// CheckTarget refuses any address other than loopback or one inside the cluster's pod network: the tests
// send traffic nowhere else.
func (e *Env) CheckTarget(ip string) error {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("target %q: %w", ip, err)
	}
	if a.IsLoopback() || (e.podCIDR.IsValid() && e.podCIDR.Contains(a)) {
		return nil
	}
	return fmt.Errorf("refusing target %s: only loopback and the pod network %v", a, e.podCIDR)
}

// PodHTTPGet sends one GET to the pod's port: directly to its pod IP when this process can reach the pod
// network (local provider; the address must be inside it), otherwise through the apiserver's pod proxy.
// Returns the status code and body.
func (e *Env) PodHTTPGet(ctx context.Context, pod *corev1.Pod, port int, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !e.Provider.PodNetworkReachable() {
		u, err := url.Parse(path)
		if err != nil {
			return 0, "", err
		}
		req := e.Client.CoreV1().RESTClient().Get().Namespace(pod.Namespace).Resource("pods").
			SubResource("proxy").Name(pod.Name + ":" + strconv.Itoa(port)).Suffix(u.Path)
		for k, vs := range u.Query() {
			for _, v := range vs {
				req = req.Param(k, v)
			}
		}
		var code int
		body, err := req.Do(ctx).StatusCode(&code).Raw()
		if err != nil && code == 0 {
			return 0, "", err
		}
		return code, string(body), nil
	}
	if err := e.CheckTarget(pod.Status.PodIP); err != nil {
		return 0, "", err
	}
	target := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port)) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, "", err
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// NewClient builds a REST config and a clientset from a kubeconfig file.
func NewClient(kubeconfig string) (*rest.Config, kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	return cfg, cs, err
}

// CtrlClient returns a controller-runtime client for the cluster with the given scheme (e.g. one that also
// knows the ShutdownProfile types); nil scheme means client-go's.
func (e *Env) CtrlClient(scheme *runtime.Scheme) (ctrlclient.Client, error) {
	// controller-runtime prints a stack trace when a client logs before any logger is set; the suite's
	// clients have nothing to log.
	ctrlLogOnce.Do(func() { ctrllog.SetLogger(logr.Discard()) })
	return ctrlclient.New(e.Config, ctrlclient.Options{Scheme: scheme})
}

// WaitFor polls cond every 200 ms until it returns true or an error, or the timeout passes; desc names the
// condition in the error.
func WaitFor(ctx context.Context, timeout time.Duration, desc string, cond func(context.Context) (bool, error)) error {
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, cond); err != nil {
		return fmt.Errorf("waiting %v for %s: %w", timeout, desc, err)
	}
	return nil
}
