package cli

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Kind is a kind in an API group, written as kubectl writes resources: "Deployment.apps",
// "Rollout.argoproj.io", and "Pod" for the core group.
type Kind struct {
	Group, Name string
}

func (k Kind) String() string {
	if k.Group == "" {
		return k.Name
	}
	return k.Name + "." + k.Group
}

// kindOf reads the kind of an object from its apiVersion ("apps/v1": group apps; "v1": the core group).
func kindOf(apiVersion, kind string) Kind {
	group, _, found := strings.Cut(apiVersion, "/")
	if !found {
		group = ""
	}
	return Kind{Group: group, Name: kind}
}

// templateKind says where a kind keeps its pod template, or why lastcall leaves it alone.
type templateKind struct {
	// path is the pod template's path in the object; nil for a Pod, which is its own template.
	path []string
	// skip, when set, says why documents of this kind are never injected although they hold containers.
	skip string
}

// Kinds is the table of kinds whose documents inject reads: builtinKinds, plus --pod-template entries.
type Kinds map[Kind]templateKind

var (
	specTemplate = []string{"spec", "template"}
	knativeSkip  = "Knative refuses lifecycle hooks in its containers (its queue-proxy drains a revision " +
		"before the pod stops), so a preStop hook would make the API server reject the object"
)

// builtinKinds are the workloads the CLI injects without being told: the Kubernetes ones, and the
// controllers people run in their place. A kind missing here is left alone with a note when it holds
// containers; --pod-template adds it.
var builtinKinds = Kinds{
	{"", "Pod"}:                   {},
	{"", "PodTemplate"}:           {path: []string{"template"}},
	{"", "ReplicationController"}: {path: specTemplate},
	{"apps", "Deployment"}:        {path: specTemplate},
	{"apps", "StatefulSet"}:       {path: specTemplate},
	{"apps", "DaemonSet"}:         {path: specTemplate},
	{"apps", "ReplicaSet"}:        {path: specTemplate},
	// extensions/v1beta1 is long gone from API servers, but old charts still render it.
	{"extensions", "Deployment"}: {path: specTemplate},
	{"extensions", "DaemonSet"}:  {path: specTemplate},
	{"extensions", "ReplicaSet"}: {path: specTemplate},
	{"batch", "Job"}:             {path: specTemplate},
	{"batch", "CronJob"}:         {path: []string{"spec", "jobTemplate", "spec", "template"}},
	// Argo Rollouts; a Rollout with spec.workloadRef has no template of its own (its Deployment is injected).
	{"argoproj.io", "Rollout"}: {path: specTemplate},
	// OpenKruise: CloneSet, Advanced StatefulSet and DaemonSet, BroadcastJob.
	{"apps.kruise.io", "CloneSet"}:     {path: specTemplate},
	{"apps.kruise.io", "StatefulSet"}:  {path: specTemplate},
	{"apps.kruise.io", "DaemonSet"}:    {path: specTemplate},
	{"apps.kruise.io", "BroadcastJob"}: {path: specTemplate},
	// KEDA: a ScaledJob's jobTargetRef is a Job spec.
	{"keda.sh", "ScaledJob"}: {path: []string{"spec", "jobTargetRef", "template"}},
	// OpenShift.
	{"apps.openshift.io", "DeploymentConfig"}: {path: specTemplate},
	// Knative Serving: known, and left alone on purpose.
	{"serving.knative.dev", "Service"}:       {path: specTemplate, skip: knativeSkip},
	{"serving.knative.dev", "Configuration"}: {path: specTemplate, skip: knativeSkip},
	{"serving.knative.dev", "Revision"}:      {skip: knativeSkip},
}

// coreGroups are tried, in order, for a document without apiVersion (a fragment, a kustomize base): its kind
// is taken to be the Kubernetes one.
var coreGroups = []string{"", "apps", "batch"}

// lookup finds the table entry for an object's apiVersion and kind.
func (ks Kinds) lookup(apiVersion, kind string) (Kind, templateKind, bool) {
	if apiVersion == "" {
		for _, g := range coreGroups {
			if tk, ok := ks[Kind{g, kind}]; ok {
				return Kind{g, kind}, tk, true
			}
		}
		return Kind{Name: kind}, templateKind{}, false
	}
	k := kindOf(apiVersion, kind)
	tk, ok := ks[k]
	return k, tk, ok
}

// parsePodTemplate reads a --pod-template value: KIND[.GROUP]=PATH, PATH dotted ("spec.template").
func parsePodTemplate(s string) (Kind, []string, error) {
	key, path, ok := strings.Cut(s, "=")
	name, group, _ := strings.Cut(strings.TrimSpace(key), ".")
	if !ok || name == "" {
		return Kind{}, nil, fmt.Errorf("%q: want KIND[.GROUP]=PATH, e.g. Rollout.argoproj.io=spec.template", s)
	}
	if c := name[0]; c < 'A' || c > 'Z' {
		return Kind{}, nil, fmt.Errorf("%q: a kind starts with an upper-case letter (Rollout, not rollout)", s)
	}
	path = strings.TrimSpace(path)
	if path == "" {
		return Kind{}, nil, fmt.Errorf("%q: the path to the pod template is empty (only a Pod is its own template)", s)
	}
	parts := strings.Split(path, ".")
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "[]* ") {
			return Kind{}, nil, fmt.Errorf("%q: path %q: want object keys separated by dots (spec.template); list items are not supported", s, path)
		}
	}
	return Kind{Group: group, Name: name}, parts, nil
}

// podTemplateFlag collects --pod-template flags.
type podTemplateFlag []string

func (f *podTemplateFlag) String() string { return strings.Join(*f, ",") }

func (f *podTemplateFlag) Set(s string) error {
	*f = append(*f, s)
	return nil
}

// kinds returns the built-in table with the flags' entries added (a flag for a built-in kind replaces it,
// which also un-skips a Knative kind).
func (f podTemplateFlag) kinds() (Kinds, error) {
	if len(f) == 0 {
		return builtinKinds, nil
	}
	out := make(Kinds, len(builtinKinds)+len(f))
	for k, v := range builtinKinds {
		out[k] = v
	}
	for _, s := range f {
		k, path, err := parsePodTemplate(s)
		if err != nil {
			return nil, fmt.Errorf("--pod-template %w", err)
		}
		out[k] = templateKind{path: path}
	}
	return out, nil
}

// containersAt returns the paths of the containers lists in obj ("spec.runner.spec.containers"), sorted: a
// "containers" key whose value is a list of objects with a name or an image.
func containersAt(obj map[string]any) []string {
	var found []string
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := k
				if path != "" {
					p = path + "." + k
				}
				if k == "containers" && looksLikeContainers(e) {
					found = append(found, p)
					continue
				}
				walk(e, p)
			}
		case []any:
			for i, e := range x {
				walk(e, path+"["+strconv.Itoa(i)+"]")
			}
		}
	}
	walk(obj, "")
	sort.Strings(found)
	return found
}

func looksLikeContainers(v any) bool {
	l, ok := v.([]any)
	if !ok || len(l) == 0 {
		return false
	}
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		if _, hasImage := m["image"]; !hasImage {
			if _, hasName := m["name"]; !hasName {
				return false
			}
		}
	}
	return true
}

// leftAlone says why a document of kind k that holds containers was not injected, with the flag that would
// inject it when its containers sit in a pod template the table can point at.
func leftAlone(k Kind, tk templateKind, known bool, obj map[string]any) string {
	at := containersAt(obj)
	if len(at) == 0 {
		return ""
	}
	if k.Name == "" {
		return fmt.Sprintf("a document without a kind holds containers (%s); they were left alone", strings.Join(at, ", "))
	}
	if known && tk.skip != "" {
		return fmt.Sprintf("%s holds containers (%s) but is left alone: %s", k, strings.Join(at, ", "), tk.skip)
	}
	msg := fmt.Sprintf("%s is not a kind lastcall knows; its containers (%s) were left alone", k, strings.Join(at, ", "))
	if tmpl, ok := strings.CutSuffix(at[0], ".spec.containers"); ok && !strings.Contains(tmpl, "[") {
		msg += fmt.Sprintf(" (to inject them: --pod-template %s=%s)", k, tmpl)
	}
	return msg
}
