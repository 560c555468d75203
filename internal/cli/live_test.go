package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeKubectl writes a kubectl stand-in that answers from files named after its arguments.
func fakeKubectl(t *testing.T, answers map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\n# drop --kubeconfig X --context Y\nwhile [ \"$1\" = --kubeconfig ] || [ \"$1\" = --context ]; do shift 2; done\ncase \"$*\" in\n"
	i := 0
	for args, body := range answers {
		i++
		f := filepath.Join(dir, "answer"+string(rune('a'+i)))
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		script += "  '" + args + "') cat " + f + " ;;\n"
	}
	script += "  *) echo \"Error from server (NotFound): $*\" >&2; exit 1 ;;\nesac\n"
	bin := filepath.Join(dir, "kubectl")
	if err := os.WriteFile(bin, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return bin
}

const liveDeployment = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","uid":"u1","resourceVersion":"7","managedFields":[{"manager":"kubectl"}]},
"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}}},"status":{"replicas":1}}`

func TestExplainLiveObject(t *testing.T) {
	t.Parallel()
	kubectl := fakeKubectl(t, map[string]string{
		"get deploy/web -n shop -o json":                           liveDeployment,
		"get namespace shop -o json":                               `{"metadata":{"name":"shop","labels":{"lastcall.dev/inject":"enabled","team":"a,b"},"annotations":{"lastcall.dev/default-profile":"http"}}}`,
		"get shutdownprofiles.lastcall.dev -o json":                `{"items":[{"apiVersion":"lastcall.dev/v1alpha1","kind":"ShutdownProfile","metadata":{"name":"nginx","uid":"x","generation":2},"spec":{"drainDelay":"9s"},"status":{"conditions":[]}}]}`,
		"get configmap lastcall-policy -n lastcall-system -o json": `{"data":{"policy.yaml":"defaultProfile: http\nmaxGracePeriod: 15m\n"}}`,
		"version -o json":                                          `{"serverVersion":{"gitVersion":"v1.37.2"}}`,
		"get --raw /apis/coordination.k8s.io/v1/namespaces/lastcall-system/leases/lastcall-observer": `{"spec":{"holderIdentity":"lastcall-abc_1"}}`,
		"get --raw /api/v1/namespaces/lastcall-system/pods/lastcall-abc:8080/proxy/shutdowns":        `{"leader":true,"window":"6h0m0s","workloads":[{"namespace":"shop","kind":"Deployment","name":"web","container":"web","profile":"nginx","shutdowns":4,"exited":4,"p50Seconds":9,"p99Seconds":10,"maxSeconds":10,"graceSeconds":36}]}`,
	})
	var out, errb bytes.Buffer
	code := Run([]string{"explain", "deploy/web", "-n", "shop", "--kubectl", kubectl}, nil, &out, &errb)
	if code != ExitOK {
		t.Fatalf("exit %d: %s\n%s", code, errb.String(), out.String())
	}
	t.Logf("lastcall explain deploy/web -n shop:\n%s", out.String())
	for _, want := range []string{
		"Deployment/web (namespace shop, template",
		"profile:", "nginx",
		"9s", // the cluster's ShutdownProfile override of nginx, not the built-in 5s
		"recent shutdowns (last 6h0m0s):",
		"web: 4 shutdowns, 0 killed, p50 9s, p99 10s, grace 36s: fine",
	} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s\nstderr: %s", want, out.String(), errb.String())
		}
	}

	// A ShutdownProfile the catalog refuses (a bad glob) or this CLI cannot decode is left out with a note, as
	// the webhook leaves it out; the good one still applies.
	kubectl = fakeKubectl(t, map[string]string{
		"get deploy/web -n shop -o json": liveDeployment,
		"get namespace shop -o json":     `{"metadata":{"name":"shop","labels":{"lastcall.dev/inject":"enabled"}}}`,
		"get shutdownprofiles.lastcall.dev -o json": `{"items":[{"apiVersion":"lastcall.dev/v1alpha1","kind":"ShutdownProfile","metadata":{"name":"nginx"},"spec":{"drainDelay":"9s"}},` +
			`{"apiVersion":"lastcall.dev/v1alpha1","kind":"ShutdownProfile","metadata":{"name":"globby"},"spec":{"stopSignal":"SIGTERM","match":{"images":["[abc"]}}},` +
			`{"apiVersion":"lastcall.dev/v1alpha1","kind":"ShutdownProfile","metadata":{"name":"future"},"spec":{"stopSignal":"SIGTERM","drainJitter":"1s"}}]}`,
	})
	out.Reset()
	errb.Reset()
	code = Run([]string{"explain", "deploy/web", "-n", "shop", "--kubectl", kubectl}, nil, &out, &errb)
	if code != ExitOK || !strings.Contains(out.String(), "9s") {
		t.Fatalf("exit %d, output:\n%s\nstderr: %s", code, out.String(), errb.String())
	}
	for _, want := range []string{
		`lastcall: note: ShutdownProfile/globby: match.images[0] "[abc": bad glob: syntax error in pattern: left out, as the webhook does`,
		`lastcall: note: ShutdownProfile/future: error unmarshaling JSON: while decoding JSON: json: unknown field "drainJitter": left out`,
	} {
		if !strings.Contains(errb.String(), want) {
			t.Fatalf("stderr lacks %q: %s", want, errb.String())
		}
	}

	// A namespace without lastcall's label: explained as the webhook would see it, not selected.
	kubectl = fakeKubectl(t, map[string]string{
		"get deploy/web -n shop -o json": liveDeployment,
		"get namespace shop -o json":     `{"metadata":{"name":"shop"}}`,
	})
	out.Reset()
	errb.Reset()
	code = Run([]string{"explain", "deploy/web", "-n", "shop", "--kubectl", kubectl}, nil, &out, &errb)
	if code != ExitOK || !strings.Contains(out.String(), "not opted in") {
		t.Fatalf("exit %d, output:\n%s\nstderr: %s", code, out.String(), errb.String())
	}
	for _, want := range []string{"cannot read ShutdownProfiles", "using the default policy"} {
		if !strings.Contains(errb.String(), want) {
			t.Fatalf("stderr lacks %q: %s", want, errb.String())
		}
	}

	// An object that does not exist: kubectl's message, exit 1.
	out.Reset()
	errb.Reset()
	if code := Run([]string{"explain", "deploy/nope", "-n", "shop", "--kubectl", kubectl}, nil, &out, &errb); code != ExitFindings || !strings.Contains(errb.String(), "NotFound") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
