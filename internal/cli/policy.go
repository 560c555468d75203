package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/version"
)

const policyUsage = `Usage:
  lastcall policy render [--policy FILE] [--profiles DIR] [--namespace-selector optIn|all]
                         [--exclude-namespaces a,b] [--name NAME] [-o FILE]

Compiles the effective catalog (built-ins plus the ShutdownProfiles under --profiles) and the policy into a
MutatingAdmissionPolicy + binding and ValidatingAdmissionPolicies + bindings (Warn; Deny in strict mode) that
give the webhook's result without a webhook (Kubernetes >= 1.36). The output is byte-stable.
`

// runPolicy is `lastcall policy ...`.
func runPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "render" {
		fmt.Fprint(stderr, policyUsage)
		return ExitBadInput
	}
	fs := newFlagSet("policy render", stderr)
	var policyFile, profilesDir, selector, exclude, name, out string
	fs.StringVar(&policyFile, "policy", "", "policy file (the chart's policy values)")
	fs.StringVar(&profilesDir, "profiles", "", "directory (or file) of ShutdownProfile manifests")
	fs.StringVar(&selector, "namespace-selector", SelectorOptIn, "optIn or all")
	fs.StringVar(&exclude, "exclude-namespaces", "", "namespaces never served, besides kube-system, kube-public, kube-node-lease")
	fs.StringVar(&name, "name", "lastcall", "name of the policies and bindings")
	fs.StringVar(&out, "o", "", "write to FILE instead of stdout")
	rest, err := parseArgs(fs, args[1:])
	if err != nil {
		return ExitBadInput
	}
	if len(rest) > 0 {
		return badInput(stderr, fmt.Errorf("policy render: unexpected argument %q", rest[0]))
	}
	pol := mutate.DefaultPolicy()
	if policyFile != "" {
		data, err := os.ReadFile(policyFile)
		if err != nil {
			return badInput(stderr, fmt.Errorf("--policy: %w", err))
		}
		if pol, err = mutate.ParsePolicy(data); err != nil {
			return badInput(stderr, fmt.Errorf("--policy %s: %w", policyFile, err))
		}
	}
	catalog, err := loadCatalog(profilesDir)
	if err != nil {
		return badInput(stderr, err)
	}
	o := policy.Options{
		Name: name, Policy: pol, Catalog: catalog, Version: version.Version,
		// Policy mode needs 1.36, so the capabilities are those of a 1.36 server unless the policy says otherwise.
		Capabilities: mutate.ResolveCapabilities(pol.Capabilities, policy.MinKubernetesMinor),
	}
	switch selector {
	case SelectorOptIn:
		o.NamespaceSelection = policy.SelectOptIn
	case SelectorAll:
		o.NamespaceSelection = policy.SelectAll
	default:
		return badInput(stderr, fmt.Errorf("--namespace-selector %q: must be %s or %s", selector, SelectorOptIn, SelectorAll))
	}
	for _, n := range strings.Split(exclude, ",") {
		if n = strings.TrimSpace(n); n != "" {
			o.ExcludeNamespaces = append(o.ExcludeNamespaces, n)
		}
	}
	ps, err := policy.Compile(o)
	if err != nil {
		return badInput(stderr, err)
	}
	data, err := ps.YAML()
	if err != nil {
		return badInput(stderr, err)
	}
	w := stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return badInput(stderr, fmt.Errorf("-o: %w", err))
		}
		defer f.Close()
		w = f
	}
	if _, err := w.Write(data); err != nil {
		return badInput(stderr, fmt.Errorf("write: %w", err))
	}
	fmt.Fprintf(stderr, "lastcall: rendered %d profiles into policies for Kubernetes >= 1.%d; not reproduced from the webhook:\n", len(catalog.Names()), policy.MinKubernetesMinor)
	for _, l := range policy.Limitations {
		fmt.Fprintf(stderr, "  - %s\n", l)
	}
	return ExitOK
}
