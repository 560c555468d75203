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

// profileDir writes ShutdownProfiles the way a GitOps repository holds them, next to other manifests.
func profileDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"nginx.yaml": "apiVersion: lastcall.dev/v1alpha1\nkind: ShutdownProfile\nmetadata: {name: nginx}\nspec:\n  drainDelay: 10s\n",
		"envoy.yml": "# our edge proxy\napiVersion: lastcall.dev/v1alpha1\nkind: ShutdownProfile\nmetadata: {name: envoy}\nspec:\n" +
			"  description: Envoy drains listeners on SIGTERM\n  stopSignal: TERM\n  drainTimeout: 45s\n  match: {images: [envoy]}\n---\n" +
			"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\n",
		"kustomization.yaml": "resources: [nginx.yaml, envoy.yml]\n",
		"README.md":          "not a manifest",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestProfilesList(t *testing.T) {
	t.Parallel()
	out, stderr, code := run(t, "", "profiles", "list")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 11 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "SIGNAL") {
		t.Fatalf("want a header and 10 built-ins:\n%s", out)
	}
	if f := strings.Fields(lines[1]); !cmp.Equal(f[:5], []string{"apache-httpd", "SIGWINCH", "5s", "25s", "built-in"}) {
		t.Errorf("first row %q", lines[1])
	}

	out, stderr, code = run(t, "", "profiles", "list", "--profiles", profileDir(t))
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var nginx, envoy string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "nginx "):
			nginx = strings.Join(strings.Fields(l)[:7], " ")
		case strings.HasPrefix(l, "envoy "):
			envoy = strings.Join(strings.Fields(l)[:5], " ")
		}
	}
	if nginx != "nginx SIGQUIT 10s 25s ShutdownProfile/nginx (overrides built-in)" {
		t.Errorf("nginx row %q", nginx)
	}
	if envoy != "envoy SIGTERM 0s 45s ShutdownProfile/envoy" {
		t.Errorf("envoy row %q", envoy)
	}
}

func TestProfilesDescribe(t *testing.T) {
	t.Parallel()
	out, stderr, code := run(t, "", "profiles", "describe", "php-fpm")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"Name:            php-fpm\n",
		"Source:          built-in\n",
		"Role:            upstream\n",
		"Drain delay:     5s\n",
		"Stop signal:     SIGQUIT\n",
		"Drain timeout:   30s\n",
		"Checks:          php-fpm-process-control-timeout\n",
		"Match images:    php:*fpm*, php-fpm*\n",
		"Match commands:  php-fpm*\n",
		"Detection:       tried 2nd in auto-detection\n",
		"Docs:            https://www.php.net/manual/en/install.fpm.configuration.php\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}

	// Flags after the name work too; cluster profiles are detected first.
	out, _, code = run(t, "", "profiles", "describe", "envoy", "--profiles", profileDir(t), "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	var got ProfileInfo
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	want := ProfileInfo{Name: "envoy", Description: "Envoy drains listeners on SIGTERM", Source: "ShutdownProfile/envoy", Role: "other",
		DrainDelay: "0s", StopSignal: "SIGTERM", DrainTimeout: "45s", MatchImages: []string{"envoy"}, DetectionOrder: 1}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("envoy (-want +got):\n%s", d)
	}
}

func TestProfilesErrors(t *testing.T) {
	t.Parallel()
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "p.yaml"), []byte("apiVersion: lastcall.dev/v1alpha1\nkind: ShutdownProfile\nmetadata: {name: worker}\nspec: {drainTimeout: 1m}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	typo := t.TempDir()
	if err := os.WriteFile(filepath.Join(typo, "p.yaml"), []byte("apiVersion: lastcall.dev/v1alpha1\nkind: ShutdownProfile\nmetadata: {name: worker}\nspec: {stopSignl: TERM}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"unknown profile", []string{"profiles", "describe", "tomcat"}, `unknown profile "tomcat" (known: apache-httpd, celery,`},
		{"no subcommand", []string{"profiles"}, "want 'list' or 'describe NAME'"},
		{"describe without a name", []string{"profiles", "describe"}, "want 'list' or 'describe NAME'"},
		{"invalid ShutdownProfile", []string{"profiles", "list", "--profiles", bad}, "ShutdownProfile/worker: stopSignal: required for a profile that does not override a built-in"},
		{"unknown ShutdownProfile field", []string{"profiles", "list", "--profiles", typo}, `document 1 (line 1) ShutdownProfile: error unmarshaling JSON: while decoding JSON: json: unknown field "stopSignl"`},
		{"inject with an invalid profile", []string{"inject", "--profiles", bad}, "ShutdownProfile/worker: stopSignal: required"},
		{"missing directory", []string{"profiles", "list", "--profiles", filepath.Join(bad, "nope")}, "--profiles: stat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := run(t, "", tc.args...)
			if code != ExitBadInput || out != "" || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d (want 2), stdout %q, stderr lacks %q:\n%s", code, out, tc.stderr, stderr)
			}
		})
	}
}

// A ShutdownProfile from --profiles drives injection exactly as in the cluster.
func TestInjectWithProfiles(t *testing.T) {
	t.Parallel()
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: edge}\nspec:\n  containers:\n  - {name: envoy, image: envoyproxy/envoy:v1.31}\n  - {name: web, image: nginx:1.27}\n"
	ex := explainJSON(t, pod, "--profiles", profileDir(t))
	var got []string
	for _, c := range ex.Pods[0].Containers {
		got = append(got, c.Container+" "+c.Profile+" "+c.ProfileOrigin+" "+c.DrainDelay+" "+c.DrainTimeout)
	}
	want := []string{"envoy envoy ShutdownProfile/envoy 0s 45s", "web nginx ShutdownProfile/nginx (overrides built-in) 10s 25s"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, _, code := run(t, "", "version")
	if code != ExitOK || out != "lastcall "+testcases.Version+"\n" {
		t.Errorf("exit %d, %q", code, out)
	}
}
