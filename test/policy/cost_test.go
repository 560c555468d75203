package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// The built-ins plus 100 ShutdownProfiles (each with image and command patterns, some globs) compile into
// policies the API server accepts and evaluates within its CEL cost limits for a pod of 12 containers with
// every lastcall annotation set per container; the policies run with failurePolicy Fail here, so exceeding a
// limit would fail the CREATE. The last profile is the one detected, so detection walks the whole chain.
func TestHundredProfilesWithinCostLimits(t *testing.T) {
	var ovs []profiles.Override
	for i := 0; i < 100; i++ {
		d, to := time.Duration(i%10)*time.Second, time.Duration(10+i)*time.Second
		ovs = append(ovs, profiles.Override{
			Name: fmt.Sprintf("custom-%03d", i), StopSignal: []string{"SIGTERM", "SIGQUIT", "SIGINT", "SIGUSR1"}[i%4], DrainDelay: &d, DrainTimeout: &to,
			Match:  &profiles.Match{Images: []string{fmt.Sprintf("custom-%03d", i), fmt.Sprintf("vendor-%03d-*", i)}, Commands: []string{fmt.Sprintf("srv%03d", i), fmt.Sprintf("srv%03d-[a-z]*", i)}},
			Source: "ShutdownProfile/custom",
		})
	}
	catalog, errs := profiles.Builtins().Layer(ovs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	install(t, "hundred", policy.Options{Policy: mutate.DefaultPolicy(), Catalog: catalog, Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: testcases.Version})

	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "probe-hundred", Annotations: map[string]string{}}}
	for i := 0; i < 12; i++ {
		name := fmt.Sprintf("c%02d", i)
		c := corev1.Container{Name: name, Image: "registry.example.com/team/vendor-099-x:1.0", Command: []string{"/usr/bin/env", "srv099-z", "--flag"}}
		p.Spec.Containers = append(p.Spec.Containers, c)
		p.Annotations[mutate.AnnotationDrainDelay+"."+name] = "3s"
		p.Annotations[mutate.AnnotationDrainTimeout+"."+name] = "bad"
		p.Annotations[mutate.AnnotationStopSignal+"."+name] = "QUIT"
	}
	start := time.Now()
	got, warnings, err := create(p, true)
	if err != nil {
		t.Fatalf("CREATE with 100 profiles and 12 containers: %v", err)
	}
	t.Logf("admitted in %s with %d warnings", time.Since(start), len(warnings))
	// The same answer as the engine with the same catalog.
	eng := mutate.New(mutate.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: testcases.Version})
	res := eng.Mutate(p, mutate.Namespace{Name: p.Namespace, Labels: map[string]string{mutate.LabelInject: "enabled"}}, catalog)
	if got, want := got.Annotations[mutate.AnnotationInjected], res.Pod.Annotations[mutate.AnnotationInjected]; got != want || !strings.HasPrefix(got, "c00=custom-099,") {
		t.Errorf("record %q, engine %q (want custom-099, detected by the last profile's glob)", got, want)
	}
	if d := cmp.Diff(res.AllWarnings(), warnings); d != "" {
		t.Errorf("warnings (-engine +policy):\n%s", d)
	}
	if g, w := *got.Spec.TerminationGracePeriodSeconds, *res.Pod.Spec.TerminationGracePeriodSeconds; g != w {
		t.Errorf("grace %d, engine %d", g, w)
	}
}
