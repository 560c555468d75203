// Package cli is the offline `lastcall` command: it runs the webhook's engine (pkg/mutate) on manifests, so
// platform teams get the injected result in CI or GitOps pipelines without a cluster, see what the webhook will
// do before installing it, and browse the profile catalog. cmd/lastcall only calls Run.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
	"github.com/lastcall-dev/lastcall/pkg/version"
)

// Exit codes.
const (
	// ExitOK: success (warnings, if any, went to stderr).
	ExitOK = 0
	// ExitFindings: --strict and some pod has a warning or problem, a strict policy would deny a pod, the
	// cluster cannot be read (live commands), or policy render left out a ShutdownProfile it cannot compile.
	ExitFindings = 1
	// ExitBadInput: unreadable or unparsable input, an unknown flag, a bad policy or profile file.
	ExitBadInput = 2
)

const usage = `lastcall: graceful-shutdown injection for Kubernetes manifests, offline (the webhook's own engine).

Usage:
  lastcall inject   [-f FILE|-] [input flags] [--strict]     inject pod templates; write the manifests to stdout
  lastcall explain  [-f FILE|-] [input flags] [-o text|json] per pod and container: profile, why, timeline
  lastcall explain  KIND/NAME -n NS [--kubeconfig F] [--context C]   the same for a live object, with the
                                                           namespace, profiles and policy from the cluster
  lastcall profiles list [--profiles DIR] [-o text|json]     the profile catalog
  lastcall profiles describe NAME [--profiles DIR] [-o text|json]
  lastcall status   [-n NS] [--kubeconfig F] [--context C] [-o text|json]
                                                           recent shutdowns per workload (from the cluster)
  lastcall policy render [--policy FILE] [--profiles DIR | --from-cluster] [-o FILE]
                                                           MutatingAdmissionPolicy (webhook-less mode, >= 1.36)
  lastcall version

Input flags (inject, explain):
  -f FILE                     manifests (multi-document YAML or JSON); "-" or none reads stdin
  --policy FILE               the webhook's policy file (the chart's policy values); default: built-in defaults
  --profiles DIR              ShutdownProfile manifests (a directory of YAML/JSON files, or one file)
  --cluster-version V         the API server version (v1.29): decides native preStop sleep; default: current
  --namespace NAME            namespace of documents without metadata.namespace (default "default")
  --namespace-labels k=v,...  the namespace's labels (default: lastcall.dev/inject=enabled, i.e. opted in)
  --namespace-annotations k=v,...  the namespace's annotations (e.g. lastcall.dev/default-profile=gunicorn)
  --namespace-selector MODE   optIn (default) or all, as the chart's webhook.namespaceSelector.mode
  --strict                    exit 1 when any pod has a warning or problem
  --pod-template KIND.GROUP=PATH  also inject this kind, whose pod template is at PATH (repeatable), e.g.
                              --pod-template Widget.example.com=spec.podTemplate; see docs/cli.md for the kinds
                              read without it

Exit codes: 0 success; 1 findings with --strict (or a strict policy denies a pod; a live command cannot read
the cluster; policy render left out a ShutdownProfile it cannot compile); 2 bad input.
`

// GCPercent is the garbage collector setting cmd/lastcall runs with: inject allocates about 40 KB per
// document and keeps little of it, so a larger heap growth target saves collections. 200 measured as fast as
// 400 with a smaller peak (about 150 MB for 10,000 documents); GC off was slower (page faults).
const GCPercent = 200

// Run is the whole command line. It never calls os.Exit, so tests run it in-process.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitBadInput
	}
	switch args[0] {
	case "inject":
		return runInject(args[1:], stdin, stdout, stderr)
	case "explain":
		return runExplain(args[1:], stdin, stdout, stderr)
	case "profiles":
		return runProfiles(args[1:], stdout, stderr)
	case "status":
		return runStatus(args[1:], stdout, stderr)
	case "policy":
		return runPolicy(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "lastcall %s\n", version.Version)
		return ExitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	}
	fmt.Fprintf(stderr, "lastcall: unknown command %q\n\n%s", args[0], usage)
	return ExitBadInput
}

// inputFlags are the flags inject and explain share.
type inputFlags struct {
	file, policy, profiles, clusterVersion string
	namespace, nsLabels, nsAnnotations     string
	selector                               string
	strict                                 bool
	podTemplates                           podTemplateFlag
}

func (f *inputFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.file, "f", "-", "manifests to read (\"-\": stdin)")
	fs.StringVar(&f.file, "filename", "-", "same as -f")
	fs.StringVar(&f.policy, "policy", "", "policy file")
	fs.StringVar(&f.profiles, "profiles", "", "directory (or file) of ShutdownProfile manifests")
	fs.StringVar(&f.clusterVersion, "cluster-version", "", "API server version, e.g. v1.29")
	fs.StringVar(&f.namespace, "namespace", "default", "namespace of documents without metadata.namespace")
	fs.StringVar(&f.nsLabels, "namespace-labels", "", "namespace labels k=v,... (default: opted in)")
	fs.StringVar(&f.nsAnnotations, "namespace-annotations", "", "namespace annotations k=v,...")
	fs.StringVar(&f.selector, "namespace-selector", SelectorOptIn, "optIn or all")
	fs.BoolVar(&f.strict, "strict", false, "exit 1 on any warning or problem")
	fs.Var(&f.podTemplates, "pod-template", "KIND[.GROUP]=PATH: where a kind keeps its pod template (repeatable)")
}

// newFlagSet returns a flag set that reports errors to stderr once and never exits.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lastcall "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, "run 'lastcall help' for usage\n") }
	return fs
}

// parseArgs parses flags wherever they appear (flag stops at the first positional argument; people write
// `lastcall profiles describe nginx --profiles dir`).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// setup turns the input flags into an injector. Every error is bad input.
func (f *inputFlags) setup() (*Injector, error) {
	policy := mutate.DefaultPolicy()
	if f.policy != "" {
		data, err := os.ReadFile(f.policy)
		if err != nil {
			return nil, fmt.Errorf("--policy: %w", err)
		}
		policy, err = mutate.ParsePolicy(data)
		if err != nil {
			return nil, fmt.Errorf("--policy %s: %w", f.policy, err)
		}
	}
	minor := 0
	if f.clusterVersion != "" {
		var err error
		minor, err = parseMinor(f.clusterVersion)
		if err != nil {
			return nil, fmt.Errorf("--cluster-version: %w", err)
		}
	}
	catalog, err := loadCatalog(f.profiles)
	if err != nil {
		return nil, err
	}
	kinds, err := f.podTemplates.kinds()
	if err != nil {
		return nil, err
	}
	ns := Namespaces{Default: f.namespace, Selector: f.selector}
	if f.selector != SelectorOptIn && f.selector != SelectorAll {
		return nil, fmt.Errorf("--namespace-selector %q: must be %s or %s", f.selector, SelectorOptIn, SelectorAll)
	}
	if ns.Default == "" {
		return nil, errors.New("--namespace: must not be empty")
	}
	if f.nsLabels != "" {
		if ns.Labels, err = parseKV(f.nsLabels); err != nil {
			return nil, fmt.Errorf("--namespace-labels: %w", err)
		}
	}
	if f.nsAnnotations != "" {
		if ns.Annotations, err = parseKV(f.nsAnnotations); err != nil {
			return nil, fmt.Errorf("--namespace-annotations: %w", err)
		}
	}
	return &Injector{
		Engine:     mutate.New(mutate.Options{Policy: policy, Capabilities: mutate.ResolveCapabilities(policy.Capabilities, minor), Version: version.Version}),
		Catalog:    catalog,
		Namespaces: ns,
		Kinds:      kinds,
	}, nil
}

var versionRE = regexp.MustCompile(`^v?(\d+)\.(\d+)(\.\d+)?([-+].*)?$`)

// parseMinor reads "v1.29", "1.29.3" or "v1.30.1-gke.1" (what `kubectl version` prints) as the minor version.
func parseMinor(v string) (int, error) {
	m := versionRE.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return 0, fmt.Errorf("%q: want a Kubernetes version such as v1.29", v)
	}
	if m[1] != "1" {
		return 0, fmt.Errorf("%q: only Kubernetes 1.x is known", v)
	}
	minor, err := strconv.Atoi(m[2])
	if err != nil {
		return 0, fmt.Errorf("%q: %w", v, err)
	}
	return minor, nil
}

// parseKV reads "k=v,k2=v2". Values may be empty; keys may not.
func parseKV(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%q: want key=value", part)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

// loadCatalog layers the ShutdownProfiles found under path (a directory or a file) over the built-ins, the
// way the webhook does. Documents of other kinds are ignored, so the directory can be a folder of manifests.
// A profile the catalog refuses is an error: the files are the user's own, to fix before they are applied.
func loadCatalog(path string) (*profiles.Catalog, error) {
	if path == "" {
		return profiles.Builtins(), nil
	}
	items, where, err := readProfileFiles(path)
	if err != nil {
		return nil, err
	}
	catalog, errs := v1alpha1.Catalog(items)
	if len(errs) > 0 {
		var all []error
		for _, n := range sortedKeys(errs) {
			all = append(all, fmt.Errorf("--profiles %s: ShutdownProfile/%s: %w", where[n], n, errs[n]))
		}
		return nil, errors.Join(all...)
	}
	return catalog, nil
}

// readProfileFiles reads the ShutdownProfiles under path (a directory of .yaml/.yml/.json files, or one
// file); where says which file and document each one came from, by name. A document that does not decode and
// a name defined twice are errors.
func readProfileFiles(path string) ([]v1alpha1.ShutdownProfile, map[string]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--profiles: %w", err)
	}
	files := []string{path}
	if st.IsDir() {
		files = nil
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, nil, fmt.Errorf("--profiles: %w", err)
		}
		for _, e := range entries {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() {
					files = append(files, filepath.Join(path, e.Name()))
				}
			}
		}
	}
	var items []v1alpha1.ShutdownProfile
	where := map[string]string{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, fmt.Errorf("--profiles: %w", err)
		}
		docs, _ := splitInput(data)
		for _, d := range docs {
			var h struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(d.text, &h); err != nil {
				return nil, nil, fmt.Errorf("--profiles %s: document %d (line %d): not valid YAML: %w", file, d.index, d.line, err)
			}
			if h.Kind != "ShutdownProfile" {
				continue
			}
			var sp v1alpha1.ShutdownProfile
			if err := yaml.UnmarshalStrict(d.text, &sp); err != nil {
				return nil, nil, fmt.Errorf("--profiles %s: document %d (line %d) ShutdownProfile: %w", file, d.index, d.line, err)
			}
			at := fmt.Sprintf("%s document %d", file, d.index)
			if prev, dup := where[sp.Name]; dup {
				return nil, nil, fmt.Errorf("--profiles %s: ShutdownProfile/%s is also defined in %s", at, sp.Name, prev)
			}
			where[sp.Name] = at
			items = append(items, sp)
		}
	}
	return items, where, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// readInput reads -f (a file, or stdin for "-").
// inject is what inject and explain share: build the injector from the flags, read the input, run it.
func (f *inputFlags) inject(stdin io.Reader) (*Injector, *Output, error) {
	in, err := f.setup()
	if err != nil {
		return nil, nil, err
	}
	data, err := readInput(f.file, stdin)
	if err != nil {
		return nil, nil, err
	}
	out, err := in.Inject(data)
	if err != nil {
		return nil, nil, err
	}
	return in, out, nil
}

func readInput(file string, stdin io.Reader) ([]byte, error) {
	if file == "-" || file == "" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-f: %w", err)
	}
	return data, nil
}

// badInput prints an error as one line per cause and returns exit code 2.
func badInput(stderr io.Writer, err error) int {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(stderr, "lastcall: error: %s\n", line)
	}
	return ExitBadInput
}
