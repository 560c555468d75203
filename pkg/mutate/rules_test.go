package mutate_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

func engine(caps mutate.Capabilities, edit ...func(*mutate.Policy)) *mutate.Engine {
	p := mutate.DefaultPolicy()
	for _, f := range edit {
		f(&p)
	}
	return mutate.New(mutate.Options{Policy: p, Capabilities: caps, Version: "test"})
}

var ns = mutate.Namespace{Name: "default"}

func passes(t *testing.T, e *mutate.Engine, pod *corev1.Pod, n int) *mutate.Result {
	t.Helper()
	var res *mutate.Result
	for i := 0; i < n; i++ {
		res = e.Mutate(pod, ns, profiles.Builtins())
		pod = res.Pod
	}
	return res
}

func container(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// Issue 12 item 1: a user's native sleep was recorded as lastcall's and rewritten on the second pass (7s -> 6s).
func TestUserPreStopSleepSurvivesEveryPass(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "web", Image: "nginx:1.27", Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 7}}}},
		{Name: "api", Image: "registry.example.com/api:1"},
	}}}
	e := engine(mutate.Capabilities{PreStopSleep: true})
	for n := 1; n <= 4; n++ {
		res := passes(t, e, pod, n)
		web := container(res.Pod, "web")
		if web.Lifecycle.PreStop.Sleep == nil || web.Lifecycle.PreStop.Sleep.Seconds != 7 {
			t.Fatalf("after %d passes web's preStop is %+v, want the user's sleep of 7s", n, web.Lifecycle.PreStop)
		}
		if res.Containers[0].Rendering != mutate.RenderKeptExisting {
			t.Fatalf("after %d passes web's rendering is %s, want kept", n, res.Containers[0].Rendering)
		}
		// The upstream is ordered after the proxy's real (kept) delay.
		if api := container(res.Pod, "api"); api.Lifecycle.PreStop.Sleep.Seconds != 8 {
			t.Fatalf("after %d passes api sleeps %ds, want 8 (web's own 7s + 1s)", n, api.Lifecycle.PreStop.Sleep.Seconds)
		}
	}
	// Without the record (it may not fit the annotation limit) a sleep is the user's: the pod stays as it is.
	res := passes(t, e, pod, 1)
	delete(res.Pod.Annotations, mutate.AnnotationInjected)
	again := e.Mutate(res.Pod, ns, profiles.Builtins())
	if d := cmp.Diff(res.Pod.Spec, again.Pod.Spec); d != "" {
		t.Fatalf("a pass without the record changed the pod:\n%s", d)
	}
}

// Issue 12 item 2: on reinvocation lastcall rewrote its init container to its canonical form, removing the
// ServiceAccount token mount, and moved it back in front of another webhook's init container.
func TestReinvocationKeepsOtherMutatorsWork(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "web", Image: "nginx:1.27"}, {Name: "php", Image: "php:8.3-fpm"},
	}}}
	e := engine(mutate.Capabilities{PreStopSleep: true})
	first := e.Mutate(pod, ns, profiles.Builtins()).Pod

	// What the ServiceAccount admission plugin, a secrets injector and a policy engine do to every container.
	other := first.DeepCopy()
	token := corev1.VolumeMount{Name: "kube-api-access-x", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}
	for i := range other.Spec.InitContainers {
		c := &other.Spec.InitContainers[i]
		c.VolumeMounts = append(c.VolumeMounts, token)
		c.Env = append(c.Env, corev1.EnvVar{Name: "VAULT_ADDR", Value: "https://vault"})
		c.Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
		if c.SecurityContext == nil {
			c.SecurityContext = &corev1.SecurityContext{}
		}
		c.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Level: "s0:c1"}
		c.SecurityContext.RunAsUser = ptr(int64(1000))
	}
	other.Spec.InitContainers = append([]corev1.Container{{Name: "vault-agent-init", Image: "vault:1"}}, other.Spec.InitContainers...)

	for n := 1; n <= 3; n++ {
		res := e.Mutate(other, ns, profiles.Builtins())
		if d := cmp.Diff(other.Spec, res.Pod.Spec); d != "" {
			t.Fatalf("pass %d undid another mutator's work (-theirs +lastcall):\n%s", n, d)
		}
		other = res.Pod
	}

	// lastcall still updates what it owns: its image (a policy change) and its own mount.
	e2 := engine(mutate.Capabilities{PreStopSleep: true}, func(p *mutate.Policy) { p.Shim.Image = "registry.example.com/shim:v2" })
	c := other.DeepCopy()
	shim := container(c, mutate.ShimContainerName)
	shim.VolumeMounts = shim.VolumeMounts[1:] // lose lastcall's own mount
	res := e2.Mutate(c, ns, profiles.Builtins())
	shim = container(res.Pod, mutate.ShimContainerName)
	if shim.Image != "registry.example.com/shim:v2" || len(shim.VolumeMounts) != 2 || shim.VolumeMounts[1].MountPath != mutate.ShimDir {
		t.Fatalf("lastcall did not restore what it owns: image %s mounts %+v", shim.Image, shim.VolumeMounts)
	}
	if res.Pod.Spec.InitContainers[0].Name != "vault-agent-init" {
		t.Fatalf("init containers reordered: %s first", res.Pod.Spec.InitContainers[0].Name)
	}
}

func ptr[T any](v T) *T { return &v }

// Issue 12 item 3: a pod near the API server's 256 KiB annotation limit was pushed over it by the record.
func TestRecordNeverPushesAnnotationsOverTheLimit(t *testing.T) {
	t.Parallel()
	e := engine(mutate.Capabilities{PreStopSleep: true})
	for _, room := range []int{0, 10, 40, 200} {
		big := strings.Repeat("x", mutate.MaxAnnotationsSize-len("big")-room)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{"big": big}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}
		res := passes(t, e, pod, 2)
		if n := annotationsSize(res.Pod); n > mutate.MaxAnnotationsSize {
			t.Fatalf("room %d: annotations take %d bytes, over the limit %d", room, n, mutate.MaxAnnotationsSize)
		}
		if container(res.Pod, "web").Lifecycle == nil {
			t.Fatalf("room %d: the shutdown was not injected", room)
		}
		_, recorded := res.Pod.Annotations[mutate.AnnotationInjected]
		if !recorded && !strings.Contains(strings.Join(res.Warnings, "\n"), "left out") {
			t.Fatalf("room %d: record left out without a warning: %v", room, res.Warnings)
		}
	}
}

func annotationsSize(p *corev1.Pod) int {
	n := 0
	for k, v := range p.Annotations {
		n += len(k) + len(v)
	}
	return n
}

// Issue 12 item 4: a bad value was silently ignored when the container or the pod ended up skipped; strict
// mode must deny it.
func TestBadAnnotationsAreReportedWhateverTheOutcome(t *testing.T) {
	t.Parallel()
	for name, ann := range map[string]map[string]string{
		"container off":  {"lastcall.dev/profile": "none", "lastcall.dev/profile.web": "NGINX"},
		"pod opted out":  {"lastcall.dev/inject": "false", "lastcall.dev/drain-delay": "soon"},
		"bad inject":     {"lastcall.dev/inject": "nope"},
		"mesh container": {"lastcall.dev/drain-timeout.istio-proxy": "forever"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: ann},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}, {Name: "istio-proxy", Image: "istio/proxyv2"}}}}
			res := engine(mutate.Capabilities{PreStopSleep: true}).Mutate(pod, ns, profiles.Builtins())
			if len(res.Problems) == 0 {
				t.Fatalf("no problem reported for %v", ann)
			}
			if _, deny := res.DenyMessage(true); !deny {
				t.Fatalf("strict mode admits %v", ann)
			}
		})
	}
}

// Issue 12 item 5: with a per-container delay on the proxy, the upstream was signalled before it.
func TestUpstreamFollowsTheLatestProxy(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		"lastcall.dev/drain-delay.web": "10s", "lastcall.dev/drain-delay.lb": "3s", "lastcall.dev/profile.api": "uvicorn"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}, {Name: "lb", Image: "haproxy:3"}, {Name: "api", Image: "registry.example.com/api:1"}}}}
	res := engine(mutate.Capabilities{PreStopSleep: true}).Mutate(pod, ns, profiles.Builtins())
	api := res.Containers[2]
	if api.DrainDelay.Duration.Seconds() != 11 || api.OrderedAfter != "web" {
		t.Fatalf("api delay %s after %q, want 11s after web", api.DrainDelay.Duration, api.OrderedAfter)
	}
}

// The roles of the built-ins are part of the contract: ordering depends on them.
func TestBuiltinRoles(t *testing.T) {
	t.Parallel()
	want := map[string]profiles.Role{
		"nginx": profiles.RoleProxy, "haproxy": profiles.RoleProxy, "apache-httpd": profiles.RoleProxy,
		"php-fpm": profiles.RoleUpstream, "gunicorn": profiles.RoleUpstream, "uvicorn": profiles.RoleUpstream, "http": profiles.RoleUpstream,
		"celery": profiles.RoleWorker, "sidekiq": profiles.RoleWorker, "postgres": profiles.RoleOther,
	}
	cat := profiles.Builtins()
	for _, name := range cat.Names() {
		p, _ := cat.Get(name)
		if w, ok := want[name]; !ok || p.Role != w {
			t.Errorf("built-in %s has role %q, want %q", name, p.Role, w)
		}
	}
}

// Issue 12 item 8: a user's lifecycle.stopSignal was replaced by the profile's, or dropped.
func TestUserStopSignalIsKept(t *testing.T) {
	t.Parallel()
	for _, caps := range []mutate.Capabilities{{PreStopSleep: true}, {PreStopSleep: true, StopSignal: true}, {}} {
		sig := corev1.Signal("SIGINT")
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: corev1.PodSpec{OS: &corev1.PodOS{Name: corev1.Linux},
			Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27", Lifecycle: &corev1.Lifecycle{StopSignal: &sig}}}}}
		res := passes(t, engine(caps), pod, 3)
		web := container(res.Pod, "web")
		if web.Lifecycle.StopSignal == nil || *web.Lifecycle.StopSignal != sig {
			t.Fatalf("caps %+v: stopSignal became %v", caps, web.Lifecycle.StopSignal)
		}
		if d := res.Containers[0]; d.StopSignal != profiles.SIGINT || d.StopSignalSource == "" {
			t.Fatalf("caps %+v: decision signal %s from %q, want SIGINT from the container", caps, d.StopSignal, d.StopSignalSource)
		}
		if !strings.Contains(strings.Join(res.Warnings, "\n"), "differs from the nginx profile's SIGQUIT") {
			t.Fatalf("caps %+v: no conflict warning: %v", caps, res.Warnings)
		}
	}
}

// Issue 13: apache2ctl does not exec, so every rendering that signals PID 1 leaves apache serving.
func TestApache2ctlSignalsTheServerByName(t *testing.T) {
	t.Parallel()
	for _, caps := range []mutate.Capabilities{{PreStopSleep: true}, {PreStopSleep: true, StopSignal: true}} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "web", Image: "debian:bookworm", Command: []string{"/usr/sbin/apache2ctl", "-DFOREGROUND"}}}}}
		res := engine(caps, func(p *mutate.Policy) { p.Supervise = true }).Mutate(pod, ns, profiles.Builtins())
		web := container(res.Pod, "web")
		if web.Lifecycle.StopSignal != nil || web.Command[0] != "/usr/sbin/apache2ctl" {
			t.Fatalf("caps %+v: signal reaches PID 1: stopSignal %v command %v", caps, web.Lifecycle.StopSignal, web.Command)
		}
		cmd := strings.Join(web.Lifecycle.PreStop.Exec.Command, " ")
		if !strings.HasSuffix(cmd, "--signal SIGWINCH --timeout 25s --target name:apache2") {
			t.Fatalf("caps %+v: hook %q", caps, cmd)
		}
	}
}

func TestOptOutValues(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]bool{"false": true, "False": true, " NO ": true, "off": true, "Disabled": true, "0": true,
		"true": false, "yes": false, "enabled": false, "1": false, "nope": false, "": false} {
		if got, _ := mutate.InjectAnnotationValue(v); got != want {
			t.Errorf("InjectAnnotationValue(%q) opts out = %v, want %v", v, got, want)
		}
	}
}
