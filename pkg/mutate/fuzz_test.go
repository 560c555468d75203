package mutate_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// FuzzMutate: for any pod the API server could decode, the engine does not panic, is idempotent over any
// number of passes, never undoes what another mutator did between passes, never touches what the user
// wrote, and its output keeps the invariants the API server enforces on what lastcall writes.
func FuzzMutate(f *testing.F) {
	cases, err := testcases.Load("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range cases {
		raw, _ := json.Marshal(c.Pod)
		f.Add(raw, false, false)
		f.Add(raw, true, true)
	}
	cat := profiles.Builtins()
	f.Fuzz(func(t *testing.T, raw []byte, sleep, stopSignal bool) {
		var pod corev1.Pod
		if err := json.Unmarshal(raw, &pod); err != nil {
			return
		}
		e := mutate.New(mutate.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: sleep, StopSignal: stopSignal}, Version: "fuzz"})
		ns := mutate.Namespace{Name: "fuzz"}
		res := e.Mutate(&pod, ns, cat)
		again := e.Mutate(res.Pod, ns, cat)
		third := e.Mutate(again.Pod, ns, cat)
		a, _ := json.Marshal(res.Pod)
		b, _ := json.Marshal(again.Pod)
		c, _ := json.Marshal(third.Pod)
		if !bytes.Equal(a, b) || !bytes.Equal(b, c) {
			t.Fatalf("not idempotent:\n%s\n%s\n%s", a, b, c)
		}
		checkInvariants(t, &pod, res)
		checkUserFieldsKept(t, &pod, third)
		checkOtherMutatorsKept(t, e, ns, cat, res)
	})
}

// checkUserFieldsKept: a user's preStop hook and stopSignal survive every pass (policy keep, the default),
// unless the user's own annotation asks lastcall for a different signal.
func checkUserFieldsKept(t *testing.T, in *corev1.Pod, res *mutate.Result) {
	t.Helper()
	record := in.Annotations[mutate.AnnotationInjected]
	for _, list := range [][]corev1.Container{in.Spec.InitContainers, in.Spec.Containers} {
		for i := range list {
			c := &list[i]
			if c.Lifecycle == nil {
				continue
			}
			out := findContainer(res.Pod, c.Name)
			if out == nil || !handled(res, c.Name) {
				continue
			}
			if h := c.Lifecycle.PreStop; h != nil && !shimHook(h) && !claimed(record, c.Name, h) {
				if out.Lifecycle == nil || !equality.Semantic.DeepEqual(out.Lifecycle.PreStop, h) {
					t.Fatalf("container %s: the user's preStop %+v became %+v", c.Name, h, out.Lifecycle)
				}
			}
			if sig := c.Lifecycle.StopSignal; sig != nil && !signalAnnotated(in, c.Name) {
				if out.Lifecycle == nil || out.Lifecycle.StopSignal == nil || *out.Lifecycle.StopSignal != *sig {
					t.Fatalf("container %s: the user's stopSignal %s became %+v", c.Name, *sig, out.Lifecycle)
				}
			}
		}
	}
}

// checkOtherMutatorsKept plays another mutator between passes: it adds a mount, env, a resource and a
// securityContext field to lastcall's own init containers and puts its own init container first. The next
// pass must keep all of it, in order.
func checkOtherMutatorsKept(t *testing.T, e *mutate.Engine, ns mutate.Namespace, cat *profiles.Catalog, res *mutate.Result) {
	t.Helper()
	if res.Skip != nil || len(res.Pod.Spec.InitContainers) == 0 {
		return
	}
	theirs := res.Pod.DeepCopy()
	touched := false
	for i := range theirs.Spec.InitContainers {
		c := &theirs.Spec.InitContainers[i]
		if !ours(c) {
			continue
		}
		touched = true
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "fuzz-token", MountPath: "/var/run/secrets/fuzz"})
		c.Env = append(c.Env, corev1.EnvVar{Name: "FUZZ_MUTATOR", Value: "1"})
		if c.Resources.Limits == nil {
			c.Resources.Limits = corev1.ResourceList{}
		}
		c.Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
		if c.SecurityContext == nil {
			c.SecurityContext = &corev1.SecurityContext{}
		}
		c.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Level: "s0:c1"}
	}
	if !touched {
		return
	}
	theirs.Spec.Volumes = append(theirs.Spec.Volumes, corev1.Volume{Name: "fuzz-token", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	theirs.Spec.InitContainers = append([]corev1.Container{{Name: "fuzz-mutator-init-first", Image: "mutator:1"}}, theirs.Spec.InitContainers...)
	out := e.Mutate(theirs, ns, cat).Pod
	if d := cmp.Diff(theirs.Spec, out.Spec); d != "" {
		t.Fatalf("a reinvocation undid another mutator's work (-theirs +lastcall):\n%s", d)
	}
}

func ours(c *corev1.Container) bool {
	return len(c.Command) > 1 && (c.Command[0] == mutate.ShimImagePath || (c.Command[0] == mutate.ShimPath && c.Command[1] == "check"))
}

func shimHook(h *corev1.LifecycleHandler) bool {
	return h.Exec != nil && len(h.Exec.Command) > 1 && h.Exec.Command[0] == mutate.ShimPath && h.Exec.Command[1] == "prestop"
}

// claimed: the input's own record says lastcall rendered this container's (sleep) hook.
func claimed(record, name string, h *corev1.LifecycleHandler) bool {
	if h.Sleep == nil || h.Exec != nil || h.HTTPGet != nil || h.TCPSocket != nil {
		return false
	}
	for _, e := range strings.Split(record, ",") {
		if n, v, ok := strings.Cut(e, "="); ok && n == name {
			return v != "-" && !strings.HasSuffix(v, "(kept)")
		}
	}
	return false
}

func signalAnnotated(p *corev1.Pod, name string) bool {
	_, a := p.Annotations[mutate.AnnotationStopSignal]
	_, b := p.Annotations[mutate.AnnotationStopSignal+"."+name]
	return a || b
}

func handled(res *mutate.Result, name string) bool {
	for _, d := range res.Containers {
		if d.Container == name && d.Skip == nil {
			return true
		}
	}
	return false
}

func findContainer(p *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func checkInvariants(t *testing.T, in *corev1.Pod, res *mutate.Result) {
	t.Helper()
	if size(in.Annotations) <= mutate.MaxAnnotationsSize && size(res.Pod.Annotations) > mutate.MaxAnnotationsSize {
		t.Fatalf("annotations grew from %d to %d bytes, over the API server's limit", size(in.Annotations), size(res.Pod.Annotations))
	}
	if res.Skip != nil {
		return
	}
	p := res.Pod
	before := map[string]bool{}
	for _, list := range [][]corev1.Container{in.Spec.InitContainers, in.Spec.Containers} {
		for _, c := range list {
			before[c.Name] = true
		}
	}
	for _, v := range in.Spec.Volumes {
		before["volume "+v.Name] = true
	}
	for _, c := range p.Spec.InitContainers {
		if !before[c.Name] && len(c.Name) > mutate.MaxNameLength {
			t.Fatalf("lastcall added init container %q, longer than %d characters", c.Name, mutate.MaxNameLength)
		}
	}
	for _, v := range p.Spec.Volumes {
		if !before["volume "+v.Name] && len(v.Name) > mutate.MaxNameLength {
			t.Fatalf("lastcall added volume %q, longer than %d characters", v.Name, mutate.MaxNameLength)
		}
	}
	// One check per container that needs one, found by the container it serves.
	for _, d := range res.Containers {
		if d.Skip != nil || len(d.Checks) == 0 {
			continue
		}
		n := 0
		for _, c := range p.Spec.InitContainers {
			for _, e := range c.Env {
				if e.Name == mutate.CheckForEnv && e.Value == d.Container && ours(&c) {
					n++
				}
			}
		}
		if n != 1 {
			t.Fatalf("container %s has %d check init containers, want 1", d.Container, n)
		}
	}
	// Ordering: an upstream's delay is at least every proxy delay + 1s (unless a capped grace period leaves
	// no room for both, which a warning reports).
	if res.Grace != nil && !res.Grace.Capped {
		cat := profiles.Builtins()
		var latest time.Duration = -1
		proxy := ""
		for _, d := range res.Containers {
			if pr, ok := cat.Get(d.Profile); ok && d.Skip == nil && !d.Sidecar && pr.Role == profiles.RoleProxy && d.DrainDelay != nil && d.DrainDelay.Duration > latest {
				latest, proxy = d.DrainDelay.Duration, d.Container
			}
		}
		for _, d := range res.Containers {
			if pr, ok := cat.Get(d.Profile); ok && proxy != "" && d.Skip == nil && !d.Sidecar && pr.Role == profiles.RoleUpstream && d.Rendering != mutate.RenderKeptExisting && d.DrainDelay.Duration < latest+time.Second {
				t.Fatalf("upstream %s is signalled at %s, before proxy %s (%s) + 1s", d.Container, d.DrainDelay.Duration, proxy, latest)
			}
		}
	}
	names := map[string]bool{}
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			if names[c.Name] && c.Name != "" {
				// Duplicates the user sent stay duplicates; lastcall must not add new ones.
				for _, d := range res.Containers {
					if d.Container == c.Name {
						return
					}
				}
				t.Fatalf("duplicate container name %q", c.Name)
			}
			names[c.Name] = true
		}
	}
	vols := map[string]bool{}
	for _, v := range p.Spec.Volumes {
		vols[v.Name] = true
	}
	grace := int64(30)
	if p.Spec.TerminationGracePeriodSeconds != nil {
		grace = *p.Spec.TerminationGracePeriodSeconds
	}
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			for _, m := range c.VolumeMounts {
				if m.MountPath == mutate.ShimDir && !vols[m.Name] {
					t.Fatalf("container %s mounts the shim from a missing volume %q", c.Name, m.Name)
				}
			}
			if l := c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil && grace > 1 {
				if l.PreStop.Sleep.Seconds >= grace && l.PreStop.Sleep.Seconds > 0 {
					mine := false
					for _, d := range res.Containers {
						if d.Container == c.Name && d.Skip == nil && d.Rendering != mutate.RenderKeptExisting {
							mine = true
						}
					}
					if mine {
						t.Fatalf("container %s: preStop sleep %ds is not below the grace period %ds", c.Name, l.PreStop.Sleep.Seconds, grace)
					}
				}
			}
		}
	}
	if res.Grace != nil && time.Duration(res.Grace.After)*time.Second <= 0 && res.Grace.Needed > 0 {
		t.Fatalf("grace period %d", res.Grace.After)
	}
}

func size(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}
