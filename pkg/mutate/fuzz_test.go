package mutate_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// FuzzMutate: for any pod the API server could decode, the engine does not panic, is idempotent, and its
// output keeps the invariants the API server enforces on what lastcall writes.
func FuzzMutate(f *testing.F) {
	cases, err := testcases.Load("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range cases {
		raw, _ := json.Marshal(c.Pod)
		f.Add(raw, false, false)
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
		a, _ := json.Marshal(res.Pod)
		b, _ := json.Marshal(again.Pod)
		if !bytes.Equal(a, b) {
			t.Fatalf("not idempotent:\n%s\n%s", a, b)
		}
		checkInvariants(t, res)
	})
}

func checkInvariants(t *testing.T, res *mutate.Result) {
	t.Helper()
	if res.Skip != nil {
		return
	}
	p := res.Pod
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
