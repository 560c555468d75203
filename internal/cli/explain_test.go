package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lastcall-dev/lastcall/internal/testcases"
)

const nginxPHP = `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: web}
spec:
  selector: {matchLabels: {app: shop}}
  template:
    metadata:
      labels: {app: shop}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
      - name: php
        image: php:8.3-fpm
`

func explainJSON(t *testing.T, stdin string, args ...string) Explanation {
	t.Helper()
	out, stderr, code := run(t, stdin, append([]string{"explain", "-o", "json"}, args...)...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var ex Explanation
	if err := json.Unmarshal([]byte(out), &ex); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return ex
}

// explain -o json: profile, why, settings, ordering, checks and the timeline, as values.
func TestExplainJSON(t *testing.T) {
	t.Parallel()
	ex := explainJSON(t, nginxPHP)
	if ex.Kind != "Explanation" || ex.Version != testcases.Version || len(ex.Pods) != 1 {
		t.Fatalf("explanation header: %+v", ex)
	}
	if d := cmp.Diff(ExplainTotals{Pods: 1, Injected: 1}, ex.Summary); d != "" {
		t.Errorf("summary (-want +got):\n%s", d)
	}
	p := ex.Pods[0]
	if p.Document != 1 || p.Kind != "Deployment" || p.Name != "shop" || p.Namespace != "web" || p.Template != "spec.template" {
		t.Errorf("pod reference: %+v", p.objRef)
	}
	if p.Grace == nil || p.Grace.After != 38 || p.Grace.Needed != 38 || p.Grace.Before != nil || !p.ShimInjected {
		t.Errorf("grace %+v shim %v", p.Grace, p.ShimInjected)
	}
	nginx, php := p.Containers[0], p.Containers[1]
	want := ContainerExplain{
		Container: "nginx", Profile: "nginx", ProfileSource: `detected: image "nginx:1.27" matches "nginx"`, ProfileOrigin: "built-in",
		DrainDelay: "5s", StopSignal: "SIGQUIT", DrainTimeout: "25s", Rendering: "shim-exec", Why: nginx.Why,
		Timeline: []Event{
			{At: "0s", Seconds: 0, What: "termination starts; preStop: lastcall-shim sleeps 5s", Source: "the nginx profile"},
			{At: "5s", Seconds: 5, What: "lastcall-shim sends SIGQUIT to nginx and waits for it to exit (the kubelet reports the hook as failed, exit 137, when it does: expected)", Source: "the nginx profile"},
			{At: "30s", Seconds: 30, What: "drain timeout (25s) ends: nginx should have exited; if not, the hook returns and the kubelet sends SIGTERM", Source: "the nginx profile"},
			{At: "38s", Seconds: 38, What: "grace period ends: kubelet sends SIGKILL if nginx is still running", Source: "terminationGracePeriodSeconds 38: the longest container's delay + timeout + 2s margin needs 38s"},
		},
	}
	if d := cmp.Diff(want, nginx); d != "" {
		t.Errorf("nginx (-want +got):\n%s", d)
	}
	if !strings.Contains(nginx.Why, "the cluster cannot send it") {
		t.Errorf("nginx why: %q", nginx.Why)
	}
	if php.Profile != "php-fpm" || php.DrainDelay != "6s" || php.OrderedAfter != "nginx" || php.DrainTimeout != "30s" ||
		!cmp.Equal(php.Checks, []string{"php-fpm-process-control-timeout"}) || php.Timeline[2].Seconds != 36 {
		t.Errorf("php: %+v", php)
	}
}

// With the ContainerStopSignals capability the kubelet itself sends SIGQUIT; the timeline is the one from the
// design: t=0 sleep, t=5s SIGQUIT via lifecycle.stopSignal, SIGKILL at the grace period.
func TestExplainStopSignalTimeline(t *testing.T) {
	t.Parallel()
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("capabilities: {stopSignal: true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, nginxPHP, "explain", "--policy", policy)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"document 1 Deployment/shop (namespace web, template spec.template)\n",
		"  grace period: unset (30s) -> 38s (the longest shutdown needs 38s including a 2s margin)\n",
		"  container nginx\n    profile:   nginx (built-in); detected: image \"nginx:1.27\" matches \"nginx\"\n",
		"    shutdown:  drain delay 5s, stop signal SIGQUIT, drain timeout 25s\n",
		"    rendering: stop-signal: the cluster has ContainerStopSignals: the kubelet itself sends SIGQUIT after the delay\n",
		"    timeline:  t=0s termination starts; preStop sleeps 5s\n" +
			"               t=5s kubelet sends SIGQUIT (lifecycle.stopSignal)\n" +
			"               t=30s drain timeout (25s) ends: nginx should have exited\n" +
			"               t=38s grace period ends: kubelet sends SIGKILL if nginx is still running\n",
		"    ordering:  signalled at least 1s after the latest proxy, nginx (an upstream's delay is at least the latest proxy delay + 1s)\n",
		"               from ordering: 1s more than nginx, the latest proxy, so it stops taking requests first (its own delay was 5s, from the php-fpm profile)\n",
		"    timeline:  t=0s termination starts; preStop sleeps 6s (1s more than nginx, so nginx stops taking requests first)\n",
		"1 pods: 1 injected, 0 skipped, 0 denied; 0 warnings\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
}

// Profile sources: a container annotation, a pod annotation, the namespace default, the cluster default; and
// skips (opt-out, profile none) and problems are spelled out.
func TestExplainSourcesAndFindings(t *testing.T) {
	t.Parallel()
	in := `apiVersion: v1
kind: Pod
metadata:
  name: mixed
  annotations:
    lastcall.dev/profile.a: gunicorn
    lastcall.dev/profile.c: none
    lastcall.dev/drain-delay.b: soon
spec:
  containers:
  - {name: a, image: registry.example.com/a:1}
  - {name: b, image: registry.example.com/b:1}
  - {name: c, image: registry.example.com/c:1}
---
apiVersion: v1
kind: Pod
metadata:
  name: out
  annotations: {lastcall.dev/inject: "false"}
spec:
  containers:
  - {name: a, image: nginx}
`
	ex := explainJSON(t, in, "--namespace-annotations", "lastcall.dev/default-profile=uvicorn")
	if len(ex.Pods) != 2 {
		t.Fatalf("want 2 pods, got %d", len(ex.Pods))
	}
	var got []string
	for _, c := range ex.Pods[0].Containers {
		s := c.Container + ": " + c.Profile + " / " + c.ProfileSource
		if c.Skip != nil {
			s += " / skip " + c.Skip.Code
		}
		got = append(got, s)
	}
	want := []string{
		"a: gunicorn / annotation lastcall.dev/profile.a",
		"b: uvicorn / namespace annotation lastcall.dev/default-profile",
		"c:  /  / skip profile-none",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("sources (-want +got):\n%s", d)
	}
	if len(ex.Pods[0].Problems) != 1 || ex.Pods[0].Problems[0].Key != "lastcall.dev/drain-delay.b" || ex.Pods[0].Problems[0].Value != "soon" {
		t.Errorf("problems: %+v", ex.Pods[0].Problems)
	}
	if s := ex.Pods[1].Skip; s == nil || s.Code != "pod-opt-out-annotation" || !strings.Contains(s.Message, `lastcall.dev/inject="false"`) {
		t.Errorf("opt-out pod: %+v", s)
	}
	if d := cmp.Diff(ExplainTotals{Pods: 2, Injected: 1, Skipped: 1, Warnings: 1}, ex.Summary); d != "" {
		t.Errorf("summary (-want +got):\n%s", d)
	}

	text, _, code := run(t, in, "explain")
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"  container c\n    skipped:   lastcall.dev/profile.c=\"none\" switches lastcall off for this container [profile-none]\n",
		"  problem: annotation lastcall.dev/drain-delay.b=\"soon\": not a duration",
		"document 2 Pod/out (namespace default)\n  skipped: pod annotation lastcall.dev/inject=\"false\" opts it out [pod-opt-out-annotation]\n",
		"    profile:   http (built-in); cluster default\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("explain text lacks %q:\n%s", want, text)
		}
	}
}

// Celery has no drain delay: no hook, only the grace period.
func TestExplainGraceOnly(t *testing.T) {
	t.Parallel()
	in := "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: w, image: x, command: [celery, worker]}\n"
	ex := explainJSON(t, in)
	c := ex.Pods[0].Containers[0]
	want := []Event{
		{At: "0s", Seconds: 0, What: "termination starts; kubelet sends SIGTERM at once (no drain delay)", Source: "the celery profile"},
		{At: "10m", Seconds: 600, What: "drain timeout (10m) ends: w should have exited", Source: "the celery profile"},
		{At: "10m2s", Seconds: 602, What: "grace period ends: kubelet sends SIGKILL if w is still running", Source: "terminationGracePeriodSeconds 602: the longest container's delay + timeout + 2s margin needs 602s"},
	}
	if c.Rendering != "grace-only" || !cmp.Equal(want, c.Timeline) {
		t.Errorf("celery: rendering %s timeline %s", c.Rendering, cmp.Diff(want, c.Timeline))
	}
}

func TestExplainNothing(t *testing.T) {
	t.Parallel()
	out, _, code := run(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", "explain")
	if code != ExitOK || out != "no pods or pod templates in the input\n" {
		t.Errorf("exit %d, output %q", code, out)
	}
}

// The engine's timeline says where each number came from; explain prints it and restates nothing.
func TestExplainSourcesFromTheEngine(t *testing.T) {
	t.Parallel()
	in := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {lastcall.dev/drain-delay: 3s}}\nspec:\n  containers:\n  - {name: api, image: x, command: [gunicorn, app, --graceful-timeout=90]}\n"
	ex := explainJSON(t, in)
	tl := ex.Pods[0].Containers[0].Timeline
	if len(tl) != 4 || tl[0].Source != "annotation lastcall.dev/drain-delay" || tl[2].Source != "the command's --graceful-timeout 90" || tl[2].Seconds != 93 {
		t.Fatalf("timeline %+v", tl)
	}
	text, _, _ := run(t, in, "explain")
	if !strings.Contains(text, "from the command's --graceful-timeout 90\n") {
		t.Errorf("explain text lacks the timeout's source:\n%s", text)
	}
}

// In an observe-mode namespace explain says that lastcall changes nothing but a label, and what it costs.
func TestExplainObserveMode(t *testing.T) {
	t.Parallel()
	in := "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: nginx, image: nginx:1.27}]\n"
	out, stderr, code := run(t, in, "explain", "--namespace-labels", "lastcall.dev/inject=observe")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"observe mode:", "changes nothing about this pod's shutdown", "lastcall.dev/managed=observe", "Cost:", "1 pods: 0 injected, 1 observed (observe mode)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("explain output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "grace period:") || strings.Contains(out, " t=") {
		t.Fatalf("explain shows a rendering in observe mode:\n%s", out)
	}
}
