//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// Keys of lastcall's user contract (docs/design.md#keys), spelled out: the suite tests the contract, not the constants.
const (
	annInjected     = "lastcall.dev/injected"
	annDrainDelay   = "lastcall.dev/drain-delay"
	annDrainTimeout = "lastcall.dev/drain-timeout"
	annStopSignal   = "lastcall.dev/stop-signal"
	annProfile      = "lastcall.dev/profile"
	shimContainer   = "lastcall-shim"
	shimPath        = "/lastcall/bin/lastcall-shim"
)

var optedIn = map[string]string{framework.LabelInject: "enabled"}

// nginxContainer runs Debian's nginx in the foreground with its error log (info level) on stderr, so the
// container log shows the signals it receives and how it stops.
func nginxContainer(name string) corev1.Container {
	return corev1.Container{
		Name:            name,
		Image:           framework.ImageDebianWeb,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"nginx", "-g", "daemon off; error_log stderr info;"},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}},
			PeriodSeconds: 1,
		},
	}
}

// testappContainer is the distroless test app serving HTTP on 8080.
func testappContainer(name string, args ...string) corev1.Container {
	return corev1.Container{
		Name:            name,
		Image:           framework.ImageTestapp,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            args,
	}
}

// newPod sets a 1 s grace period: lastcall raises it to what the rendered timeline needs (it never lowers a
// larger one, such as the API's default of 30 s), and uninjected pods stop at once when a test ends.
func newPod(name string, annotations map[string]string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			DNSPolicy:                     corev1.DNSDefault, // no cluster DNS on the local cluster
			TerminationGracePeriodSeconds: ptr.To(int64(1)),
			Containers:                    containers,
		},
	}
}

func createPod(t *testing.T, env *framework.Env, ns string, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	out, err := env.Client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", p.Name, err)
	}
	return out
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// isInjected reports whether the stored pod carries any of lastcall's changes.
func isInjected(p *corev1.Pod) bool {
	if _, ok := p.Annotations[annInjected]; ok {
		return true
	}
	if findContainer(p.Spec.InitContainers, shimContainer) != nil {
		return true
	}
	for _, c := range p.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			return true
		}
	}
	return false
}

// logLine is one container log line with the kubelet's timestamp.
type logLine struct {
	At   time.Time
	Text string
}

// logFollower streams a container's log (with timestamps) from now until the container ends.
type logFollower struct {
	mu    sync.Mutex
	lines []logLine
	done  chan struct{}
}

func followLogs(t *testing.T, env *framework.Env, ns, pod, container string) *logFollower {
	t.Helper()
	f := &logFollower{done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	stream, err := env.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true, Timestamps: true}).Stream(ctx)
	if err != nil {
		cancel()
		t.Fatalf("follow logs of %s/%s: %v", pod, container, err)
	}
	go func() {
		defer close(f.done)
		defer cancel()
		defer stream.Close()
		sc := bufio.NewScanner(stream)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			ts, text, _ := strings.Cut(sc.Text(), " ")
			at, _ := time.Parse(time.RFC3339Nano, ts)
			f.mu.Lock()
			f.lines = append(f.lines, logLine{At: at, Text: text})
			f.mu.Unlock()
		}
	}()
	return f
}

// wait returns the lines once the stream ended (the container exited) or the timeout passed.
func (f *logFollower) wait(timeout time.Duration) ([]logLine, bool) {
	ended := true
	select {
	case <-f.done:
	case <-time.After(timeout):
		ended = false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]logLine(nil), f.lines...), ended
}

func firstLine(lines []logLine, substr string) (logLine, bool) {
	for _, l := range lines {
		if strings.Contains(l.Text, substr) {
			return l, true
		}
	}
	return logLine{}, false
}

func joinLines(lines []logLine) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.At.Format("15:04:05.000 "))
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// podWatcher records the last status the apiserver had for a pod before it disappeared.
type podWatcher struct {
	mu   sync.Mutex
	last *corev1.Pod
	gone time.Time
	done chan struct{}
}

func watchPod(t *testing.T, env *framework.Env, ns, name string) *podWatcher {
	t.Helper()
	w := &podWatcher{done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	wi, err := env.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		cancel()
		t.Fatalf("watch pod %s: %v", name, err)
	}
	go func() {
		defer close(w.done)
		defer cancel()
		defer wi.Stop()
		for ev := range wi.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			w.mu.Lock()
			if ev.Type == watch.Deleted {
				w.gone = time.Now()
				w.mu.Unlock()
				return
			}
			w.last = p
			w.mu.Unlock()
		}
	}()
	return w
}

// terminated waits until the pod is gone and returns the terminated state the container last had.
func (w *podWatcher) terminated(timeout time.Duration, container string) (*corev1.ContainerStateTerminated, time.Time) {
	select {
	case <-w.done:
	case <-time.After(timeout):
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		return nil, w.gone
	}
	if cs := containerStatus(w.last, container); cs != nil {
		return cs.State.Terminated, w.gone
	}
	return nil, w.gone
}

func ctrlKey(name string) ctrlclient.ObjectKey { return ctrlclient.ObjectKey{Name: name} }
