// Package mutate is the injection engine: a pure function from (Pod, namespace metadata, policy, profiles,
// cluster capabilities) to (mutated Pod, decisions, warnings). It does no I/O and holds no clients, so the
// webhook and the CLI run exactly the same code, and tests need no fakes.
package mutate

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// Engine renders shutdown behaviour into pods. It is immutable and safe for concurrent use.
type Engine struct {
	policy  Policy
	caps    Capabilities
	version string
	mesh    map[string]bool
}

// Options configure an Engine.
type Options struct {
	Policy       Policy
	Capabilities Capabilities
	// Version is written to the lastcall.dev/version annotation.
	Version string
}

// New returns an engine. The policy must have passed ParsePolicy (or be DefaultPolicy()).
func New(o Options) *Engine {
	e := &Engine{policy: o.Policy, caps: o.Capabilities, version: o.Version, mesh: map[string]bool{}}
	for _, m := range o.Policy.MeshProxies {
		e.mesh[m] = true
	}
	return e
}

// Policy returns the engine's policy.
func (e *Engine) Policy() Policy { return e.policy }

// Capabilities returns the capabilities the engine renders for.
func (e *Engine) Capabilities() Capabilities { return e.caps }

// Namespace is the namespace metadata the engine needs (the webhook caches only metadata).
type Namespace struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// plan is the resolved shutdown of one selected container.
type plan struct {
	c         *corev1.Container
	d         *Decision
	profile   *profiles.Profile
	delay     time.Duration
	signal    profiles.Signal
	timeout   time.Duration
	supervise bool
	// target is the process the shim signals by name ("apache2") when PID 1 is a launcher that does not exec.
	target string
	// kept: the container has its own preStop hook and the policy keeps it.
	kept bool
	// userHook: the container's preStop hook is not lastcall's.
	userHook bool
}

// Mutate returns a mutated deep copy of pod and the decisions behind it. It never panics on any Pod the API
// server can decode (the fuzz tests hold it to that) and is idempotent: Mutate(Mutate(p).Pod) equals
// Mutate(p).Pod.
func (e *Engine) Mutate(pod *corev1.Pod, ns Namespace, catalog *profiles.Catalog) *Result {
	out := pod.DeepCopy()
	// Decisions are referenced by pointer while rendering: size the slice once so it never moves.
	res := &Result{Pod: out, Containers: make([]Decision, 0, len(out.Spec.Containers)+len(out.Spec.InitContainers))}
	defer finish(res)
	names := containerNames(out)
	ps, problems := parseAnnotations(out.Annotations, func(n string) bool { _, ok := names[n]; return ok })
	res.Problems = problems
	if s := e.podSkip(out, ns); s != nil {
		res.Skip = s
		// A bad value is reported whatever the outcome: a typo must not wait for the day the pod is injected.
		ps.reportUnused(res, catalog, func(string) string { return "ignored: the pod is skipped (" + s.Message + ")" })
		return res
	}
	if observes(ns) {
		// Nothing is rendered, so no annotation is used: none can be a problem (strict mode must not deny
		// pods in a namespace that only asked to be watched).
		res.Problems = nil
		e.observe(out, res)
		return res
	}

	nsDefault, nsProblem := e.namespaceDefault(ns, catalog)
	if nsProblem != nil {
		res.Problems = append(res.Problems, *nsProblem)
	}

	plans := make([]plan, 0, len(out.Spec.Containers)+1)
	// Native sidecars first: they are listed (and started) before the app containers.
	for i := range out.Spec.InitContainers {
		c := &out.Spec.InitContainers[i]
		if !isNativeSidecar(c) || isOurs(c) {
			continue
		}
		if p, ok := e.selectContainer(out, c, true, &ps, nsDefault, catalog, res); ok {
			plans = append(plans, p)
		}
	}
	for i := range out.Spec.Containers {
		c := &out.Spec.Containers[i]
		if p, ok := e.selectContainer(out, c, false, &ps, nsDefault, catalog, res); ok {
			plans = append(plans, p)
		}
	}
	ps.reportUnused(res, catalog, func(container string) string {
		for i := range res.Containers {
			if d := &res.Containers[i]; d.Container == container && d.Skip != nil {
				return "ignored: container " + container + " is skipped (" + d.Skip.Message + ")"
			}
		}
		return "ignored: no container lastcall handles uses it"
	})
	if len(plans) == 0 {
		res.Skip = &Skip{Code: SkipNoContainers, Message: "no container needs lastcall (every one is skipped or has profile none)"}
		return res
	}
	e.markKept(out, plans)
	e.order(plans)
	res.Grace = e.grace(out, plans, res)
	e.render(out, plans, res)
	e.record(out, res)
	markManaged(out, ManagedInject)
	return res
}

func containerNames(p *corev1.Pod) map[string]struct{} {
	m := make(map[string]struct{}, len(p.Spec.Containers)+len(p.Spec.InitContainers))
	for i := range p.Spec.Containers {
		m[p.Spec.Containers[i].Name] = struct{}{}
	}
	for i := range p.Spec.InitContainers {
		m[p.Spec.InitContainers[i].Name] = struct{}{}
	}
	return m
}

func isNativeSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// podSkip decides whether the whole pod is left alone, by the selection table in keys.go.
func (e *Engine) podSkip(p *corev1.Pod, ns Namespace) *Skip {
	if _, ok := p.Annotations[annotationMirror]; ok {
		return &Skip{SkipMirrorPod, "static (mirror) pod: the kubelet runs it from a file, the API copy cannot change it"}
	}
	if p.Spec.OS != nil && p.Spec.OS.Name == corev1.Windows {
		return &Skip{SkipWindows, "spec.os.name is windows: the shim and POSIX signals are Linux-only"}
	}
	if v := p.Labels[LabelInject]; v == "disabled" {
		return &Skip{SkipPodOptOutLabel, fmt.Sprintf("pod label %s=%q opts it out", LabelInject, v)}
	}
	if v, ok := p.Annotations[AnnotationInject]; ok {
		if out, _ := InjectAnnotationValue(v); out {
			return &Skip{SkipPodOptOutAnno, fmt.Sprintf("pod annotation %s=%q opts it out", AnnotationInject, v)}
		}
	}
	if v := ns.Labels[LabelInject]; v == "disabled" {
		return &Skip{SkipNamespaceOptOut, fmt.Sprintf("namespace %s has label %s=%q", ns.Name, LabelInject, v)}
	}
	return nil
}

// namespaceDefault resolves the namespace's default profile (nil when unset or bad).
func (e *Engine) namespaceDefault(ns Namespace, catalog *profiles.Catalog) (*profiles.Profile, *Problem) {
	v, ok := ns.Annotations[AnnotationDefaultProfile]
	if !ok || v == "" || v == profiles.NameAuto {
		return nil, nil
	}
	p, found := catalog.Get(v)
	if !found {
		return nil, &Problem{Key: AnnotationDefaultProfile, Value: v, Reason: "unknown profile (known: " + joinNames(catalog) + ")", Fallback: "using the cluster default " + e.policy.DefaultProfile, Namespace: true}
	}
	return p, nil
}

func joinNames(c *profiles.Catalog) string {
	s := ""
	for i, n := range c.Names() {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}
