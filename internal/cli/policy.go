package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
	"github.com/lastcall-dev/lastcall/pkg/version"
)

const policyUsage = `Usage:
  lastcall policy render [--policy FILE] [--profiles DIR | --from-cluster [--kubeconfig F] [--context C]]
                         [--namespace-selector optIn|all] [--exclude-namespaces a,b] [--name NAME] [-o FILE]

Compiles the effective catalog (built-ins plus the ShutdownProfiles under --profiles, or those of the cluster
with --from-cluster) and the policy into a MutatingAdmissionPolicy + binding and ValidatingAdmissionPolicies +
bindings (Warn; Deny in strict mode) that give the webhook's result without a webhook (Kubernetes >= 1.36).
The output is byte-stable.

A ShutdownProfile that cannot be compiled is named on stderr with the field and value, and left out of the
rendering (as the webhook leaves out one it refuses; a built-in of that name stays as built in). The rest is
rendered, and the exit code is 1, so a pipeline notices. Exit 2: bad flags, policy or files; exit 1: the
cluster cannot be read, or is older than 1.36.
`

// runPolicy is `lastcall policy ...`.
func runPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "render" {
		fmt.Fprint(stderr, policyUsage)
		return ExitBadInput
	}
	fs := newFlagSet("policy render", stderr)
	var policyFile, profilesDir, selector, exclude, name, out string
	var fromCluster bool
	var live liveFlags
	fs.StringVar(&policyFile, "policy", "", "policy file (the chart's policy values)")
	fs.StringVar(&profilesDir, "profiles", "", "directory (or file) of ShutdownProfile manifests")
	fs.BoolVar(&fromCluster, "from-cluster", false, "the cluster's ShutdownProfiles (kubectl get shutdownprofiles)")
	fs.StringVar(&live.kubeconfig, "kubeconfig", "", "kubeconfig file (--from-cluster, as kubectl)")
	fs.StringVar(&live.kctx, "context", "", "kubeconfig context (--from-cluster)")
	fs.StringVar(&live.kubectl, "kubectl", "kubectl", "the kubectl binary (--from-cluster)")
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
	if fromCluster && profilesDir != "" {
		// A mix would render a catalog that neither the repository nor the cluster holds.
		return badInput(stderr, errors.New("policy render: --profiles and --from-cluster: give one (the ShutdownProfiles of your files, or those of the cluster)"))
	}
	if !fromCluster && (live.kubeconfig != "" || live.kctx != "") {
		return badInput(stderr, errors.New("policy render: --kubeconfig and --context need --from-cluster"))
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
	var src profileSource
	switch {
	case fromCluster:
		ctx, cancel := context.WithTimeout(context.Background(), liveTimeout)
		defer cancel()
		if src, err = clusterSource(ctx, live.getter(), stderr); err != nil {
			fmt.Fprintf(stderr, "lastcall: error: %v\n", err)
			return ExitFindings
		}
	case profilesDir != "":
		items, where, err := readProfileFiles(profilesDir)
		if err != nil {
			return badInput(stderr, err)
		}
		src = profileSource{items: items, where: func(n string) string { return where[n] }}
	}
	layered, left := renderCatalog(src)
	for _, l := range left {
		fmt.Fprintf(stderr, "lastcall: error: %s\n", l)
	}
	o := policy.Options{
		Name: name, Policy: pol, Version: version.Version,
		// Policy mode needs 1.36, so the capabilities are those of a 1.36 server unless the policy says otherwise.
		Capabilities: mutate.ResolveCapabilities(pol.Capabilities, policy.MinKubernetesMinor),
	}
	layered.Apply(&o)
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
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return badInput(stderr, fmt.Errorf("-o: %w", err))
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return badInput(stderr, fmt.Errorf("-o %s: %w", out, err))
		}
	} else if _, err := stdout.Write(data); err != nil {
		return badInput(stderr, fmt.Errorf("write: %w", err))
	}
	fmt.Fprintf(stderr, "lastcall: rendered %d profiles into policies for Kubernetes >= 1.%d; not reproduced from the webhook:\n", len(layered.Catalog.Names()), policy.MinKubernetesMinor)
	for _, l := range policy.Limitations {
		fmt.Fprintf(stderr, "  - %s\n", l)
	}
	if len(left) > 0 {
		// Last, so the line a pipeline's log ends with says what went wrong.
		fmt.Fprintf(stderr, "lastcall: error: %d ShutdownProfile(s) left out of the rendering (named above; exit %d): fix them and render again\n", len(left), ExitFindings)
		return ExitFindings
	}
	return ExitOK
}

// profileSource is where policy render's ShutdownProfiles come from: files or the cluster.
type profileSource struct {
	items []v1alpha1.ShutdownProfile
	// undecodable are cluster items whose spec this CLI cannot read, by name.
	undecodable map[string]error
	// where names an item's origin in messages ("profiles/a.yaml document 2", "the cluster").
	where func(name string) string
}

// clusterSource reads the cluster's ShutdownProfiles, through the code path live explain uses, and checks
// that the cluster serves MutatingAdmissionPolicy v1. A server version that cannot be read is noted, not an
// error: the ShutdownProfiles were read, and the rendering states the version it needs.
func clusterSource(ctx context.Context, get kubectlGetter, stderr io.Writer) (profileSource, error) {
	items, bad, err := clusterProfiles(ctx, get)
	if err != nil {
		return profileSource{}, fmt.Errorf("--from-cluster: cannot read the ShutdownProfiles: %w", err)
	}
	v, err := get(ctx, "version", "-o", "json")
	var ver struct {
		ServerVersion struct {
			GitVersion string `json:"gitVersion"`
		} `json:"serverVersion"`
	}
	if err == nil {
		err = json.Unmarshal(v, &ver)
	}
	switch minor, perr := parseMinor(ver.ServerVersion.GitVersion); {
	case err != nil || perr != nil:
		why := perr
		if err != nil {
			why = err
		}
		fmt.Fprintf(stderr, "lastcall: note: cannot read the server version (%s): not checked that it is >= 1.%d\n", firstLine1(why.Error()), policy.MinKubernetesMinor)
	case minor < policy.MinKubernetesMinor:
		return profileSource{}, fmt.Errorf("--from-cluster: the cluster runs %s; policy mode needs Kubernetes >= 1.%d (MutatingAdmissionPolicy v1): use the webhook", ver.ServerVersion.GitVersion, policy.MinKubernetesMinor)
	}
	return profileSource{items: items, undecodable: bad, where: func(string) string { return "in the cluster" }}, nil
}

// renderCatalog layers the ShutdownProfiles over the built-ins like the webhook (policy.Layer) and leaves
// out each one the catalog refuses or policy mode cannot compile (policy.ProfileProblems), so one bad profile
// never takes the others down. It returns one message per profile left out, sorted by name, that names the
// field, the value, and what happens instead.
func renderCatalog(src profileSource) (layered policy.Layered, left []string) {
	reasons := map[string]string{}
	for n, err := range src.undecodable {
		reasons[n] = oneLine(err.Error())
	}
	// The webhook's layering, less what policy mode cannot compile (one step shared with the controller).
	ovs := make([]profiles.Override, 0, len(src.items))
	for i := range src.items {
		ovs = append(ovs, src.items[i].Override())
	}
	layered = policy.Layer(ovs)
	refused, problems := layered.Refused, layered.Problems
	for n, err := range refused {
		reasons[n] = oneLine(err.Error())
	}
	for n, probs := range problems {
		reasons[n] = strings.Join(probs, "; ")
	}
	builtins := profiles.Builtins()
	for _, n := range sortedKeys(reasons) {
		what := "left out of the rendering"
		if _, ok := builtins.Get(n); ok {
			what += " (the built-in " + n + " is rendered as built in)"
		} else if len(problems[n]) > 0 {
			what += " (pods that would get it, by name or by its match rules, are admitted unchanged with a warning: use the webhook for them)"
		}
		left = append(left, fmt.Sprintf("ShutdownProfile/%s (%s): %s: %s", n, src.where(n), reasons[n], what))
	}
	return layered, left
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }
