package integration

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

// Issue 12 item 3: a pod whose annotations are near the API server's 256 KiB total was rejected once lastcall
// added its record. Through the real webhook and API server it is now created, injected, without the record.
// The control: the same pod with the record the old engine added is refused by the API server ("Too long").
func TestNearLimitAnnotationsStayAdmissible(t *testing.T) {
	ctx := context.Background()
	namespace(t, "limits", map[string]string{mutate.LabelInject: "enabled"})
	big := strings.Repeat("x", mutate.MaxAnnotationsSize-len("example.com/big")-20)

	control := nginxPod("control", "limits")
	control.Labels = map[string]string{mutate.LabelInject: "disabled"} // not sent to lastcall
	control.Annotations = map[string]string{"example.com/big": big, mutate.AnnotationInjected: "web=nginx", mutate.AnnotationVersion: "v1"}
	if err := k8s.Create(ctx, control, client.DryRunAll); err == nil || !strings.Contains(err.Error(), "Too long") {
		t.Fatalf("the API server accepted annotations over its limit (err %v): the test proves nothing", err)
	}

	p := nginxPod("near-limit", "limits")
	p.Annotations = map[string]string{"example.com/big": big}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatalf("a pod admissible without lastcall was refused with it: %v", err)
	}
	var stored corev1.Pod
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &stored); err != nil {
		t.Fatal(err)
	}
	if l := stored.Spec.Containers[0].Lifecycle; l == nil || l.PreStop == nil {
		t.Fatalf("not injected: %+v", stored.Spec.Containers[0])
	}
	if _, ok := stored.Annotations[mutate.AnnotationInjected]; ok {
		t.Errorf("the record was written although it does not fit")
	}
}

// Issue 12 item 1 on the real API server: a user's own preStop sleep of 7s is stored as 7s.
func TestUserSleepSurvivesAdmission(t *testing.T) {
	ctx := context.Background()
	namespace(t, "user-sleep", map[string]string{mutate.LabelInject: "enabled"})
	p := nginxPod("web", "user-sleep")
	p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 7}}}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "php", Image: "php:8.3-fpm"})
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	var stored corev1.Pod
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &stored); err != nil {
		t.Fatal(err)
	}
	if s := stored.Spec.Containers[0].Lifecycle.PreStop.Sleep; s == nil || s.Seconds != 7 {
		t.Fatalf("web's preStop is %+v, want the user's sleep of 7s", stored.Spec.Containers[0].Lifecycle.PreStop)
	}
	if got := stored.Annotations[mutate.AnnotationInjected]; got != "web=nginx(kept),php=php-fpm" {
		t.Errorf("record %q", got)
	}
}
