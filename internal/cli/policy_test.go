package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// ShutdownProfiles as `kubectl get shutdownprofiles.lastcall.dev -o json` lists them, with server-set metadata
// and status. myapp is fine; the others cannot be compiled, each for another reason.
const (
	spMyapp    = `{"apiVersion":"lastcall.dev/v1alpha1","kind":"ShutdownProfile","metadata":{"name":"myapp","uid":"u1","generation":3,"resourceVersion":"9"},"spec":{"stopSignal":"SIGTERM","drainDelay":"7s","match":{"images":["myapp*"]}},"status":{"observedGeneration":3,"conditions":[{"type":"Accepted","status":"True","reason":"Valid","message":"ok","lastTransitionTime":"2026-12-01T00:00:00Z"}]}}`
	spSubMilli = `{"apiVersion":"lastcall.dev/v1alpha1","kind":"ShutdownProfile","metadata":{"name":"nginx"},"spec":{"drainDelay":"1500us"}}`
	spNoSignal = `{"apiVersion":"lastcall.dev/v1alpha1","kind":"ShutdownProfile","metadata":{"name":"nosignal"},"spec":{"drainDelay":"3s"}}`
	spSlowStop = `{"apiVersion":"lastcall.dev/v1alpha1","kind":"ShutdownProfile","metadata":{"name":"slowstop"},"spec":{"stopSignal":"SIGTERM","drainTimeout":"2000500us","match":{"commands":["slowstop"]}}}`
	spFuture   = `{"apiVersion":"lastcall.dev/v1alpha1","kind":"ShutdownProfile","metadata":{"name":"future"},"spec":{"stopSignal":"SIGTERM","drainJitter":"1s"}}`
	k8sVersion = `{"clientVersion":{"gitVersion":"v1.37.2"},"serverVersion":{"gitVersion":"v1.37.2"}}`
)

func spList(items ...string) string {
	return `{"kind":"List","items":[` + strings.Join(items, ",") + `]}`
}

// profileFiles writes ShutdownProfiles (JSON documents are YAML too) as one file each.
func profileFiles(t *testing.T, items ...string) string {
	t.Helper()
	dir := t.TempDir()
	for i, it := range items {
		if err := os.WriteFile(filepath.Join(dir, string(rune('a'+i))+".yaml"), []byte(it), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// policy render --from-cluster renders exactly what --profiles renders for the same ShutdownProfiles in
// files: the same layering over the built-ins, byte for byte.
func TestPolicyRenderFromCluster(t *testing.T) {
	t.Parallel()
	kubectl := fakeKubectl(t, map[string]string{
		"get shutdownprofiles.lastcall.dev -o json": spList(spMyapp),
		"version -o json": k8sVersion,
	})
	live, errOut, code := run(t, "", "policy", "render", "--from-cluster", "--kubectl", kubectl)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	files, errOut, code := run(t, "", "policy", "render", "--profiles", profileFiles(t, spMyapp))
	if code != ExitOK {
		t.Fatalf("--profiles: exit %d: %s", code, errOut)
	}
	if live != files {
		t.Fatal("--from-cluster and --profiles render the same ShutdownProfile differently")
	}
	builtins, _, _ := run(t, "", "policy", "render")
	if live == builtins || !strings.Contains(live, "myapp*") {
		t.Fatal("the cluster's ShutdownProfile is not in the rendering")
	}
}

// Every ShutdownProfile that cannot be compiled is named with its field and value and left out; the rest is
// rendered (the same bytes as with the good profiles only, but for the expressions that make pods naming the
// new profile the compiler left out fall back) and the exit code is 1. From the cluster and from files alike.
func TestPolicyRenderLeavesOutBadProfiles(t *testing.T) {
	t.Parallel()
	good, errOut, code := run(t, "", "policy", "render", "--profiles", profileFiles(t, spMyapp))
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := []string{
		// pkg/policy cannot compile it; the built-in nginx stays.
		"lastcall: error: ShutdownProfile/nginx (%s): drainDelay 1.5ms: policy mode renders durations with millisecond precision: left out of the rendering (the built-in nginx is rendered as built in)",
		// The catalog refuses it, as the webhook does.
		"lastcall: error: ShutdownProfile/nosignal (%s): stopSignal: required for a profile that does not override a built-in: left out of the rendering",
		// A new profile pkg/policy cannot compile: pods it would get fall back.
		"lastcall: error: ShutdownProfile/slowstop (%s): drainTimeout 2.0005s: policy mode renders durations with millisecond precision",
	}
	check := func(t *testing.T, out, errOut string, code int, where func(string) string, n int) {
		t.Helper()
		if code != ExitFindings {
			t.Fatalf("exit %d, want %d: %s", code, ExitFindings, errOut)
		}
		// Only the fallback for slowstop differs (nginx overrides a built-in, which stays; nosignal is refused
		// as the webhook refuses it): every differing string names it.
		diffs, err := stringDiffs(good, out)
		if err != nil {
			t.Fatal(err)
		}
		if len(diffs) == 0 {
			t.Error("the rendering equals the good profiles': pods naming slowstop would not fall back")
		}
		for _, d := range diffs {
			if !strings.Contains(d, "slowstop") {
				t.Errorf("the rendering differs from the good profiles' where slowstop is not named: %.300s", d)
			}
		}
		for _, w := range want {
			name := strings.TrimPrefix(strings.Fields(w)[2], "ShutdownProfile/")
			if w = strings.Replace(w, "%s", where(name), 1); !strings.Contains(errOut, w) {
				t.Errorf("stderr lacks %q:\n%s", w, errOut)
			}
		}
		if !strings.HasSuffix(errOut, "lastcall: error: "+string(rune('0'+n))+" ShutdownProfile(s) left out of the rendering (named above; exit 1): fix them and render again\n") {
			t.Errorf("stderr does not end with the count:\n%s", errOut)
		}
	}

	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		kubectl := fakeKubectl(t, map[string]string{
			"get shutdownprofiles.lastcall.dev -o json": spList(spFuture, spSlowStop, spMyapp, spSubMilli, spNoSignal),
			"version -o json": k8sVersion,
		})
		out, errOut, code := run(t, "", "policy", "render", "--from-cluster", "--kubectl", kubectl)
		check(t, out, errOut, code, func(string) string { return "in the cluster" }, 4)
		// A field this CLI does not know (a newer CRD) is named too, not dropped silently.
		if w := `ShutdownProfile/future (in the cluster): error unmarshaling JSON: while decoding JSON: json: unknown field "drainJitter": left out of the rendering`; !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	})
	t.Run("files", func(t *testing.T) {
		t.Parallel()
		dir := profileFiles(t, spSlowStop, spMyapp, spSubMilli, spNoSignal)
		out := filepath.Join(t.TempDir(), "policy.yaml")
		stdout, errOut, code := run(t, "", "policy", "render", "--profiles", dir, "-o", out)
		data, err := os.ReadFile(out)
		if err != nil || stdout != "" {
			t.Fatalf("-o: %v, stdout %q", err, stdout)
		}
		docs := map[string]string{"slowstop": "a.yaml", "nginx": "c.yaml", "nosignal": "d.yaml"}
		check(t, string(data), errOut, code, func(n string) string { return filepath.Join(dir, docs[n]) + " document 1" }, 3)
	})
}

// What policy render refuses: both sources at once, cluster flags without the cluster, a cluster it cannot
// read or one too old for policy mode. Nothing is written then. kubectl gets --kubeconfig and --context.
func TestPolicyRenderClusterErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		answers map[string]string
		args    []string
		code    int
		want    string
	}{
		{"both sources", nil, []string{"--profiles", "x"}, ExitBadInput, "--profiles and --from-cluster: give one"},
		{"no CRD", map[string]string{"version -o json": k8sVersion}, nil, ExitFindings,
			"lastcall: error: --from-cluster: cannot read the ShutdownProfiles: kubectl get shutdownprofiles.lastcall.dev -o json: Error from server (NotFound)"},
		{"old cluster", map[string]string{"get shutdownprofiles.lastcall.dev -o json": spList(spMyapp), "version -o json": `{"serverVersion":{"gitVersion":"v1.35.4"}}`}, nil, ExitFindings,
			"the cluster runs v1.35.4; policy mode needs Kubernetes >= 1.36 (MutatingAdmissionPolicy v1): use the webhook"},
		{"bad list", map[string]string{"get shutdownprofiles.lastcall.dev -o json": `{"items":{}}`}, nil, ExitFindings, "ShutdownProfiles: json: cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"policy", "render", "--from-cluster", "--kubectl", fakeKubectl(t, tc.answers)}, tc.args...)
			out, errOut, code := run(t, "", args...)
			if code != tc.code || out != "" || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d (want %d), stdout %d bytes, stderr lacks %q:\n%s", code, tc.code, len(out), tc.want, errOut)
			}
		})
	}
	if _, errOut, code := run(t, "", "policy", "render", "--context", "prod"); code != ExitBadInput || !strings.Contains(errOut, "--kubeconfig and --context need --from-cluster") {
		t.Fatalf("exit %d: %s", code, errOut)
	}

	// The version cannot be read: noted, and rendered.
	kubectl := fakeKubectl(t, map[string]string{"get shutdownprofiles.lastcall.dev -o json": spList(spMyapp)})
	log := filepath.Join(t.TempDir(), "args")
	logging := filepath.Join(t.TempDir(), "kubectl")
	if err := os.WriteFile(logging, []byte("#!/bin/sh\necho \"$*\" >> "+log+"\nexec "+kubectl+" \"$@\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, "", "policy", "render", "--from-cluster", "--kubectl", logging, "--kubeconfig", "/k/config", "--context", "prod")
	if code != ExitOK || !strings.Contains(out, "myapp*") || !strings.Contains(errOut, "lastcall: note: cannot read the server version (kubectl version -o json: Error from server (NotFound)") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	calls, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if want := "--kubeconfig /k/config --context prod get shutdownprofiles.lastcall.dev -o json\n--kubeconfig /k/config --context prod version -o json\n"; string(calls) != want {
		t.Fatalf("kubectl called as\n%s\nwant\n%s", calls, want)
	}
}

// stringDiffs decodes two renderings (YAML documents) and returns b's value at every place where the two
// differ: a string, or a whole subtree when their shapes differ.
func stringDiffs(a, b string) ([]string, error) {
	da, db := strings.Split(a, "\n---\n"), strings.Split(b, "\n---\n")
	if len(da) != len(db) {
		return []string{fmt.Sprintf("%d documents against %d", len(db), len(da))}, nil
	}
	var out []string
	var walk func(x, y any)
	walk = func(x, y any) {
		switch x := x.(type) {
		case map[string]any:
			if y, ok := y.(map[string]any); ok && len(x) == len(y) {
				for k := range x {
					walk(x[k], y[k])
				}
				return
			}
		case []any:
			if y, ok := y.([]any); ok && len(x) == len(y) {
				for i := range x {
					walk(x[i], y[i])
				}
				return
			}
		default:
			if reflect.DeepEqual(x, y) {
				return
			}
		}
		out = append(out, fmt.Sprint(y))
	}
	for i := range da {
		var x, y any
		if err := yaml.Unmarshal([]byte(da[i]), &x); err != nil {
			return nil, err
		}
		if err := yaml.Unmarshal([]byte(db[i]), &y); err != nil {
			return nil, err
		}
		walk(x, y)
	}
	return out, nil
}
