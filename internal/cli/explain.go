package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
	"github.com/lastcall-dev/lastcall/pkg/version"
)

// Explanation is `lastcall explain -o json`: a stable document for tools. Fields are only ever added.
type Explanation struct {
	Kind    string        `json:"kind"` // "Explanation"
	Version string        `json:"version"`
	Pods    []PodExplain  `json:"pods"`
	Summary ExplainTotals `json:"summary"`
}

// ExplainTotals counts the pods by outcome.
type ExplainTotals struct {
	Pods     int `json:"pods"`
	Injected int `json:"injected"`
	// Observed counts pods in observe-mode namespaces (only labelled).
	Observed int `json:"observed,omitempty"`
	Skipped  int `json:"skipped"`
	Denied   int `json:"denied"`
	Warnings int `json:"warnings"`
}

// PodExplain is one pod or pod template.
type PodExplain struct {
	objRef
	// Skip says why the whole pod is left alone (namespace selection, opt-out, ...).
	Skip *SkipExplain `json:"skip,omitempty"`
	// Observe is set in an observe-mode namespace (lastcall.dev/inject=observe): the sentence says what
	// lastcall does there (only a label) and what it costs.
	Observe      string             `json:"observe,omitempty"`
	Denied       string             `json:"denied,omitempty"`
	Grace        *mutate.Grace      `json:"grace,omitempty"`
	ShimInjected bool               `json:"shimInjected"`
	Containers   []ContainerExplain `json:"containers,omitempty"`
	Problems     []mutate.Problem   `json:"problems,omitempty"`
	Warnings     []string           `json:"warnings,omitempty"`
}

// SkipExplain is a skip decision: a stable code and the sentence behind it.
type SkipExplain struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ContainerExplain is one container's decision and its shutdown timeline.
type ContainerExplain struct {
	Container string       `json:"container"`
	Sidecar   bool         `json:"sidecar,omitempty"`
	Skip      *SkipExplain `json:"skip,omitempty"`
	Profile   string       `json:"profile,omitempty"`
	// ProfileSource is why this profile: the annotation, the detection rule, the namespace default or the
	// cluster default.
	ProfileSource string `json:"profileSource,omitempty"`
	// ProfileOrigin is where the profile is defined: "built-in" or "ShutdownProfile/<name>".
	ProfileOrigin string   `json:"profileOrigin,omitempty"`
	DrainDelay    string   `json:"drainDelay,omitempty"`
	StopSignal    string   `json:"stopSignal,omitempty"`
	DrainTimeout  string   `json:"drainTimeout,omitempty"`
	OrderedAfter  string   `json:"orderedAfter,omitempty"`
	Rendering     string   `json:"rendering,omitempty"`
	Why           string   `json:"why,omitempty"`
	Checks        []string `json:"checks,omitempty"`
	Timeline      []Event  `json:"timeline,omitempty"`
}

// Event is one step of a container's shutdown, at a time measured from the start of termination.
type Event struct {
	At      string  `json:"at"`
	Seconds float64 `json:"seconds"`
	What    string  `json:"what"`
	// Source says where the step's number came from (the profile, an annotation, the command line, ordering).
	Source string `json:"source,omitempty"`
}

func (e Event) String() string { return "t=" + e.At + " " + e.What }

// observeSentence is what explain says about a pod in an observe-mode namespace.
const observeSentence = "namespace label " + mutate.LabelInject + "=" + mutate.ManagedObserve + ": lastcall changes nothing about this pod's shutdown (no hook, grace period, shim or record); it only adds the label " +
	mutate.LabelManaged + "=" + mutate.ManagedObserve + " so its shutdowns are recorded (lastcall_shutdowns_total, ShutdownKilled events, lastcall status). Cost: one webhook call per pod creation and a watch entry per running pod. Label the namespace " + mutate.LabelInject + "=enabled to inject."

// explainPods builds the explanation of every pod report.
func explainPods(pods []podReport, catalog *profiles.Catalog) *Explanation {
	ex := &Explanation{Kind: "Explanation", Version: version.Version, Pods: make([]PodExplain, 0, len(pods))}
	for _, p := range pods {
		pe := PodExplain{objRef: p.Ref, Denied: p.Denied}
		ex.Summary.Pods++
		switch {
		case p.NamespaceSkip != "":
			pe.Skip = &SkipExplain{Code: "namespace-not-selected", Message: p.NamespaceSkip}
		case p.KindSkip != "":
			pe.Skip = &SkipExplain{Code: "kind-not-injected", Message: p.KindSkip}
		case p.Result != nil:
			r := p.Result
			if r.Skip != nil {
				pe.Skip = &SkipExplain{Code: string(r.Skip.Code), Message: r.Skip.Message}
			}
			if r.Observe {
				pe.Observe = observeSentence
			}
			pe.Grace, pe.ShimInjected, pe.Problems, pe.Warnings = r.Grace, r.ShimInjected, r.Problems, r.Warnings
			for i := range r.Containers {
				pe.Containers = append(pe.Containers, explainContainer(&r.Containers[i], r.Grace, catalog))
			}
			ex.Summary.Warnings += len(r.AllWarnings())
		}
		switch {
		case pe.Denied != "":
			ex.Summary.Denied++
		case pe.Skip != nil:
			ex.Summary.Skipped++
		case pe.Observe != "":
			ex.Summary.Observed++
		default:
			ex.Summary.Injected++
		}
		ex.Pods = append(ex.Pods, pe)
	}
	return ex
}

func explainContainer(d *mutate.Decision, g *mutate.Grace, catalog *profiles.Catalog) ContainerExplain {
	c := ContainerExplain{
		Container: d.Container, Sidecar: d.Sidecar, Profile: d.Profile, ProfileSource: d.ProfileSource,
		StopSignal: string(d.StopSignal), OrderedAfter: d.OrderedAfter, Rendering: string(d.Rendering), Why: d.Why,
		Checks: d.Checks,
	}
	if d.Skip != nil {
		c.Skip = &SkipExplain{Code: string(d.Skip.Code), Message: d.Skip.Message}
	}
	if p, ok := catalog.Get(d.Profile); ok {
		c.ProfileOrigin = p.Source
	}
	if d.DrainDelay != nil {
		c.DrainDelay = human(d.DrainDelay.Duration)
	}
	if d.DrainTimeout != nil {
		c.DrainTimeout = human(d.DrainTimeout.Duration)
	}
	for _, st := range d.Timeline(g) {
		c.Timeline = append(c.Timeline, Event{At: human(st.At), Seconds: st.At.Seconds(), What: st.What, Source: st.Source})
	}
	return c
}

// human writes a duration the way the engine's sentences do.
func human(d time.Duration) string { return mutate.Human(d) }

func runExplain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var f inputFlags
	var format string
	fs := newFlagSet("explain", stderr)
	f.register(fs)
	fs.StringVar(&format, "o", "text", "output format: text or json")
	fs.StringVar(&format, "output", "text", "same as -o")
	var live liveFlags
	fs.StringVar(&f.namespace, "n", "default", "same as --namespace")
	fs.StringVar(&live.kubeconfig, "kubeconfig", "", "kubeconfig file (explain KIND/NAME, as kubectl)")
	fs.StringVar(&live.kctx, "context", "", "kubeconfig context (explain KIND/NAME)")
	fs.StringVar(&live.kubectl, "kubectl", "kubectl", "the kubectl binary (explain KIND/NAME)")
	fs.StringVar(&live.lastcallNS, "lastcall-namespace", "lastcall-system", "namespace lastcall is installed in (explain KIND/NAME)")
	fs.StringVar(&live.release, "release", "lastcall", "the chart's full name (explain KIND/NAME)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return ExitBadInput
	}
	if format != "text" && format != "json" {
		return badInput(stderr, fmt.Errorf("-o %q: must be text or json", format))
	}
	var liveKind, liveName string
	switch {
	case len(rest) == 1 && strings.Contains(rest[0], "/"):
		// A live object: read it and its context from the cluster, then explain it as offline.
		ctx, cancel := context.WithTimeout(context.Background(), liveTimeout)
		defer cancel()
		dir, err := os.MkdirTemp("", "lastcall-explain-")
		if err != nil {
			return badInput(stderr, err)
		}
		defer os.RemoveAll(dir)
		var notes []string
		liveKind, liveName, notes, err = liveInput(ctx, live.getter(), live, rest[0], &f, dir)
		if err != nil {
			fmt.Fprintf(stderr, "lastcall: error: %v\n", err)
			return ExitFindings
		}
		for _, n := range notes {
			fmt.Fprintf(stderr, "lastcall: note: %s\n", n)
		}
	case len(rest) > 0:
		return badInput(stderr, fmt.Errorf("explain: unexpected argument %q (use -f FILE, or KIND/NAME for a live object)", rest[0]))
	}
	in, out, err := f.inject(stdin)
	if err != nil {
		return badInput(stderr, err)
	}
	ex := explainPods(out.Pods, in.Catalog)
	if format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(ex); err != nil {
			fmt.Fprintf(stderr, "lastcall: error: write: %v\n", err)
			return ExitBadInput
		}
	} else {
		writeExplainText(stdout, ex)
		if liveKind != "" {
			ctx, cancel := context.WithTimeout(context.Background(), liveTimeout)
			defer cancel()
			writeLiveStatus(ctx, stdout, kubectlRaw(live.kubectl, live.kubeconfig, live.kctx), live, f.namespace, liveKind, liveName)
		}
	}
	found, denied := false, false
	for _, p := range out.Pods {
		denied = denied || p.Denied != ""
		found = found || (p.Result != nil && len(p.Result.AllWarnings()) > 0)
	}
	// The findings are in the explanation already; the exit code still gates CI.
	if denied || (f.strict && found) {
		return ExitFindings
	}
	return ExitOK
}

func writeExplainText(w io.Writer, ex *Explanation) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	if len(ex.Pods) == 0 {
		fmt.Fprintln(bw, "no pods or pod templates in the input")
		return
	}
	for i, p := range ex.Pods {
		if i > 0 {
			fmt.Fprintln(bw)
		}
		head := p.objRef.String() + " (namespace " + p.Namespace
		if p.Template != "" {
			head += ", template " + p.Template
		}
		fmt.Fprintln(bw, head+")")
		if p.Skip != nil {
			fmt.Fprintf(bw, "  skipped: %s [%s]\n", p.Skip.Message, p.Skip.Code)
		}
		if p.Observe != "" {
			fmt.Fprintf(bw, "  observe mode: %s\n", p.Observe)
		}
		if p.Denied != "" {
			fmt.Fprintf(bw, "  DENIED: %s\n", p.Denied)
		}
		if g := p.Grace; g != nil {
			before := fmt.Sprintf("unset (%ds)", corev1.DefaultTerminationGracePeriodSeconds)
			if g.Before != nil {
				before = fmt.Sprintf("%ds", *g.Before)
			}
			line := fmt.Sprintf("  grace period: %s -> %ds (the longest shutdown needs %ds including a %s margin)", before, g.After, g.Needed, human(mutate.GraceMargin))
			if g.Capped {
				line += ", capped by the policy's maxGracePeriod"
			}
			fmt.Fprintln(bw, line)
		}
		if p.Skip == nil && p.Denied == "" && p.Grace != nil {
			if p.ShimInjected {
				fmt.Fprintln(bw, "  shim: init container lastcall-shim installs /lastcall/bin/lastcall-shim")
			} else {
				fmt.Fprintln(bw, "  shim: not needed")
			}
		}
		for _, c := range p.Containers {
			kind := "container"
			if c.Sidecar {
				kind = "native sidecar"
			}
			fmt.Fprintf(bw, "  %s %s\n", kind, c.Container)
			if c.Skip != nil {
				fmt.Fprintf(bw, "    skipped:   %s [%s]\n", c.Skip.Message, c.Skip.Code)
				if c.Profile == "" {
					continue
				}
			}
			origin := ""
			if c.ProfileOrigin != "" {
				origin = " (" + c.ProfileOrigin + ")"
			}
			fmt.Fprintf(bw, "    profile:   %s%s; %s\n", c.Profile, origin, c.ProfileSource)
			fmt.Fprintf(bw, "    shutdown:  drain delay %s, stop signal %s, drain timeout %s\n", c.DrainDelay, c.StopSignal, c.DrainTimeout)
			if c.OrderedAfter != "" {
				fmt.Fprintf(bw, "    ordering:  signalled at least %s after the latest proxy, %s (an upstream's delay is at least the latest proxy delay + %s)\n", human(mutate.ProxyOrderDelay), c.OrderedAfter, human(mutate.ProxyOrderDelay))
			}
			if c.Rendering != "" {
				fmt.Fprintf(bw, "    rendering: %s: %s\n", c.Rendering, c.Why)
			}
			if len(c.Checks) > 0 {
				fmt.Fprintf(bw, "    checks:    %s (a %s* init container runs them before the app starts)\n", strings.Join(c.Checks, ", "), mutate.CheckContainerPrefix)
			}
			for j, e := range c.Timeline {
				label := "    timeline:  "
				if j > 0 {
					label = "               "
				}
				fmt.Fprintf(bw, "%s%s\n", label, e)
				// Numbers that are not simply the profile's say where they came from; the grace period's
				// arithmetic is on the pod's "grace period" line.
				if e.Source != "" && e.Source != "the "+c.Profile+" profile" && j < len(c.Timeline)-1 {
					fmt.Fprintf(bw, "                 from %s\n", e.Source)
				}
			}
		}
		for _, pr := range p.Problems {
			fmt.Fprintf(bw, "  problem: %s\n", pr.String())
		}
		for _, wn := range p.Warnings {
			fmt.Fprintf(bw, "  warning: %s\n", strings.TrimPrefix(wn, "lastcall: "))
		}
	}
	s := ex.Summary
	observed := ""
	if s.Observed > 0 {
		observed = fmt.Sprintf(", %d observed (observe mode)", s.Observed)
	}
	fmt.Fprintf(bw, "\n%d pods: %d injected%s, %d skipped, %d denied; %d warnings\n", s.Pods, s.Injected, observed, s.Skipped, s.Denied, s.Warnings)
}
