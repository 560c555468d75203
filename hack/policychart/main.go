// Command policychart pre-renders lastcall's policy mode for the Helm chart and kustomize (make generate):
// Helm cannot run the compiler, so the chart ships the compiled policies for the built-in catalog and the
// chart's default policy values, with placeholders the templates fill in (shim image, version, release
// namespace). charts/lastcall/files/policy-defaults.json records the values they were compiled from; the
// template refuses other values instead of installing a policy that does not match them.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
	"github.com/lastcall-dev/lastcall/pkg/version"
)

const (
	shimImage        = "@@SHIM_IMAGE@@"
	versionHolder    = "@@VERSION@@"
	releaseNamespace = "@@RELEASE_NAMESPACE@@"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "policychart:", err)
		os.Exit(1)
	}
}

func run() error {
	data, err := os.ReadFile("charts/lastcall/values.yaml")
	if err != nil {
		return err
	}
	var values struct {
		Policy map[string]any `json:"policy"`
	}
	if err := yaml.Unmarshal(data, &values); err != nil {
		return fmt.Errorf("values.yaml: %w", err)
	}
	defaults, err := json.Marshal(values.Policy)
	if err != nil {
		return err
	}
	files := "charts/lastcall/files"
	if err := os.MkdirAll(files, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(files, "policy-defaults.json"), append(defaults, '\n'), 0o644); err != nil {
		return err
	}
	shim := values.Policy["shim"].(map[string]any)
	shim["image"] = shimImage
	caps := values.Policy["capabilities"].(map[string]any)
	caps["preStopSleep"] = fmt.Sprint(caps["preStopSleep"])
	pyaml, err := yaml.Marshal(values.Policy)
	if err != nil {
		return err
	}
	pol, err := mutate.ParsePolicy(pyaml)
	if err != nil {
		return fmt.Errorf("the chart's default policy: %w", err)
	}
	render := func(sel, ns, ver string) ([]byte, error) {
		ps, err := policy.Compile(policy.Options{
			Policy: pol, Catalog: profiles.Builtins(), Version: ver, NamespaceSelection: sel, ExcludeNamespaces: []string{ns},
			Capabilities: mutate.ResolveCapabilities(pol.Capabilities, policy.MinKubernetesMinor),
		})
		if err != nil {
			return nil, err
		}
		return ps.YAML()
	}
	for sel, name := range map[string]string{policy.SelectOptIn: "policy-optIn.yaml", policy.SelectAll: "policy-all.yaml"} {
		out, err := render(sel, releaseNamespace, versionHolder)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(files, name), out, 0o644); err != nil {
			return err
		}
	}
	// kustomize: config/policy, for the namespace config/default installs into.
	out, err := render(policy.SelectOptIn, "lastcall-system", version.Version)
	if err != nil {
		return err
	}
	out = []byte(strings.ReplaceAll(string(out), shimImage, mutate.DefaultShimImage))
	return os.WriteFile("config/policy/policy.yaml", out, 0o644)
}
