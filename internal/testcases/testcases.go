// Package testcases loads the golden fixtures in pkg/mutate/testdata, shared by the engine, webhook, CLI and
// envtest suites so that every path is held to the same expected pods.
//
// A fixture is testdata/<case>.yaml: an optional first document of kind TestCase (what the case needs from
// the world: namespace metadata, policy, capabilities, ShutdownProfiles) and then the Pod. The expected output
// is testdata/<case>.injected.yaml: the mutated Pod, then a document with the engine's report.
package testcases

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// Version is the lastcall.dev/version every fixture is rendered with, so goldens do not change per release.
const Version = "v0.0.0-test"

// Spec is the TestCase document.
type Spec struct {
	Kind        string `json:"kind"`
	Description string `json:"description,omitempty"`
	Namespace   struct {
		Name        string            `json:"name,omitempty"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"namespace,omitempty"`
	// Policy is the policy file's content (defaults fill the rest).
	Policy map[string]any `json:"policy,omitempty"`
	// Capabilities default to a current cluster: native sleep yes, stopSignal no.
	Capabilities *mutate.Capabilities `json:"capabilities,omitempty"`
	Profiles     []ProfileSpec        `json:"profiles,omitempty"`
	// EnvtestSkip explains why the case cannot be created on a real API server (for example a Windows pod
	// that the server accepts but a later case needs a node for); empty means it is dry-run created.
	EnvtestSkip string `json:"envtestSkip,omitempty"`
}

// ProfileSpec is a ShutdownProfile as a fixture states it: its name and its spec, side by side.
type ProfileSpec struct {
	Name                         string `json:"name"`
	v1alpha1.ShutdownProfileSpec `json:",inline"`
}

// Case is one loaded fixture.
type Case struct {
	Name    string
	Spec    Spec
	Pod     *corev1.Pod
	PodJSON []byte // the input Pod as JSON, as an API server would send it
	Engine  *mutate.Engine
	Catalog *profiles.Catalog
	// Profiles are the fixture's ShutdownProfiles as the API server would hold them; Catalog is made from them
	// by the same conversion the webhook uses.
	Profiles  []v1alpha1.ShutdownProfile
	Namespace mutate.Namespace
	Golden    string // path of the expected output
}

// Load reads every fixture in dir.
func Load(dir string) ([]Case, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Case
	for _, f := range files {
		if strings.HasSuffix(f, ".injected.yaml") {
			continue
		}
		c, err := loadOne(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func loadOne(path string) (Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Case{}, err
	}
	name := strings.TrimSuffix(filepath.Base(path), ".yaml")
	c := Case{Name: name, Golden: strings.TrimSuffix(path, ".yaml") + ".injected.yaml"}
	docs := bytes.Split(data, []byte("\n---\n"))
	if len(docs) == 2 {
		if err := yaml.UnmarshalStrict(docs[0], &c.Spec); err != nil {
			return Case{}, fmt.Errorf("TestCase: %w", err)
		}
		if c.Spec.Kind != "TestCase" {
			return Case{}, fmt.Errorf("first document must be kind TestCase")
		}
		docs = docs[1:]
	}
	if len(docs) != 1 {
		return Case{}, fmt.Errorf("want [TestCase ---] Pod, got %d documents", len(docs))
	}
	c.PodJSON, err = yaml.YAMLToJSON(docs[0])
	if err != nil {
		return Case{}, fmt.Errorf("pod: %w", err)
	}
	c.Pod = &corev1.Pod{}
	if err := yaml.UnmarshalStrict(docs[0], c.Pod); err != nil {
		return Case{}, fmt.Errorf("pod: %w", err)
	}
	policyYAML, err := yaml.Marshal(c.Spec.Policy)
	if err != nil {
		return Case{}, err
	}
	if c.Spec.Policy == nil {
		policyYAML = nil
	}
	policy, err := mutate.ParsePolicy(policyYAML)
	if err != nil {
		return Case{}, err
	}
	caps := mutate.Capabilities{PreStopSleep: true}
	if c.Spec.Capabilities != nil {
		caps = *c.Spec.Capabilities
	}
	c.Engine = mutate.New(mutate.Options{Policy: policy, Capabilities: caps, Version: Version})
	c.Catalog = profiles.Builtins()
	for _, p := range c.Spec.Profiles {
		c.Profiles = append(c.Profiles, v1alpha1.ShutdownProfile{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ShutdownProfile"},
			ObjectMeta: metav1.ObjectMeta{Name: p.Name},
			Spec:       p.ShutdownProfileSpec,
		})
	}
	var errs map[string]error
	c.Catalog, errs = v1alpha1.Catalog(c.Profiles)
	for n, err := range errs {
		return Case{}, fmt.Errorf("profile %s: %w", n, err)
	}
	c.Namespace = mutate.Namespace{Name: c.Spec.Namespace.Name, Labels: c.Spec.Namespace.Labels, Annotations: c.Spec.Namespace.Annotations}
	if c.Namespace.Name == "" {
		c.Namespace.Name = "default"
	}
	if c.Pod.Namespace == "" {
		c.Pod.Namespace = c.Namespace.Name
	}
	return c, nil
}

// Render is the golden text for a result: the Pod, then the report.
func Render(res *mutate.Result) ([]byte, error) {
	pod, err := PodYAML(res.Pod)
	if err != nil {
		return nil, err
	}
	report, err := yaml.Marshal(struct {
		Report *mutate.Result `json:"report"`
	}{res})
	if err != nil {
		return nil, err
	}
	return append(append(pod, "---\n"...), report...), nil
}

// PodYAML marshals a pod the same way for every path, so goldens compare byte for byte.
func PodYAML(p *corev1.Pod) ([]byte, error) {
	return yaml.Marshal(p)
}
