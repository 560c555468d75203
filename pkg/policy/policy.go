// Package policy compiles lastcall's engine (pkg/mutate) for a catalog and a policy into admission policies
// the API server runs itself (Kubernetes >= 1.36): a MutatingAdmissionPolicy whose JSONPatch mutation makes
// the engine's edits, and ValidatingAdmissionPolicies that give the engine's warnings (Warn) and, in strict
// mode, its denials (Deny). No webhook is on the admission path.
//
// CEL cannot call the Go engine, so the compiler writes the engine's decision procedure as CEL variables.
// What CEL cannot reproduce exactly is listed in Limitations: those pods are admitted unchanged with a
// warning that says so, never rendered differently.
package policy

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// MinKubernetesMinor is the first Kubernetes 1.x release that serves admissionregistration.k8s.io/v1
// MutatingAdmissionPolicy by default (GA in 1.36).
const MinKubernetesMinor = 36

// Selector modes, as the chart's webhook.namespaceSelector.mode.
const (
	SelectOptIn = "opt-in"
	SelectAll   = "all"
)

// Options say what to compile.
type Options struct {
	// Name prefixes every object ("lastcall" when empty).
	Name string
	// Policy is the chart's policy (ParsePolicy or DefaultPolicy).
	Policy mutate.Policy
	// Catalog is the effective catalog: built-ins layered with ShutdownProfiles.
	Catalog *profiles.Catalog
	// Capabilities of the target cluster. Policy mode needs >= 1.36, so native preStop sleep is there unless
	// the policy says otherwise.
	Capabilities mutate.Capabilities
	// Version is written to lastcall.dev/version.
	Version string
	// NamespaceSelection is SelectOptIn (namespaces labelled lastcall.dev/inject=enabled; the default) or
	// SelectAll (every namespace but the excluded ones and those labelled disabled).
	NamespaceSelection string
	// ExcludeNamespaces are never selected, in addition to kube-system, kube-public and kube-node-lease.
	ExcludeNamespaces []string
	// FailurePolicy of the policies: Ignore (the default; lastcall's own failures never block a pod) or Fail.
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// Uncompiled names the cluster's ShutdownProfiles that Layer left out because this compiler cannot
	// compile them (UncompiledNames), where the webhook would use them: a pod whose container would get one
	// (named by an annotation, as the namespace default, or detected by its match rules) is admitted
	// unchanged with a warning, instead of getting another profile.
	Uncompiled []string
	// Detect is the webhook's catalog for the same ShutdownProfiles (profiles.Catalog.Layer, before Layer
	// leaves any out): detection tries the profiles in its order, the Uncompiled ones with their own match
	// rules (those the compiler can write). Nil: Catalog's.
	Detect *profiles.Catalog
}

// Policies are the compiled objects: two mutating policies (the general one, and one specialised for plain
// pods; their matchConditions are disjoint) and the validating ones (warnings, split the same way, and the
// strict-mode denial), each with its binding at the same index.
type Policies struct {
	Mutating           []*admissionregistrationv1.MutatingAdmissionPolicy
	MutatingBindings   []*admissionregistrationv1.MutatingAdmissionPolicyBinding
	Validating         []*admissionregistrationv1.ValidatingAdmissionPolicy
	ValidatingBindings []*admissionregistrationv1.ValidatingAdmissionPolicyBinding
	// plain is the condition (plainPod) under which the mutating policy takes the plain way.
	plain string
}

// MutatingNames and ValidatingNames are every policy name a render named name can produce (each binding has
// its policy's name): which validating policies exist depends on the catalog and strict mode, so whoever
// applies renders deletes the ones the current render does not have, and the RetiredNames.
func MutatingNames(name string) []string { return []string{name} }

// RetiredNames are the mutating policies earlier renders had and this one does not: name-plain, the plain
// way as a policy of its own before both ways became one policy (see objects). Left in a cluster it would
// run beside the current render.
func RetiredNames(name string) []string { return []string{name + "-plain"} }

// ValidatingNames: see MutatingNames.
func ValidatingNames(name string) []string {
	return []string{name + "-warnings", name + "-warnings-handled", name + "-strict"}
}

// Has reports whether the render has a policy (and binding) of that name.
func (p *Policies) Has(name string) bool {
	for _, m := range p.Mutating {
		if m.Name == name {
			return true
		}
	}
	for _, v := range p.Validating {
		if v.Name == name {
			return true
		}
	}
	return false
}

// SetNamespaceSelector points every binding at the namespaces sel selects.
func (p *Policies) SetNamespaceSelector(sel *metav1.LabelSelector) {
	for _, b := range p.MutatingBindings {
		b.Spec.MatchResources.NamespaceSelector = sel.DeepCopy()
	}
	for _, b := range p.ValidatingBindings {
		b.Spec.MatchResources.NamespaceSelector = sel.DeepCopy()
	}
}

// Limitations are the engine behaviours this compiler does not reproduce in CEL, and what happens instead.
// `lastcall policy render` prints them; docs/install.md repeats them.
var Limitations = []string{
	"pods the policy cannot render exactly are admitted unchanged with a warning that names the reason (use the webhook for them): a container that would get a ShutdownProfile the compiler left out (by an annotation, the namespace default or its match rules; a match rule the compiler cannot write detects nothing); duration annotations with sub-millisecond precision or over 20 characters; a php-fpm check for a container name over 48 characters; a container with its own lifecycle.stopSignal; launcher scripts that do not exec the server (apache2ctl); drain timeouts from command-line flags (gunicorn --graceful-timeout, sidekiq -t, ...)",
	"lastcall's init containers already in a pod are left as they are (the webhook updates their image, command and resources to the current policy)",
	"the warnings \"terminationGracePeriodSeconds raised from 0\" and \"replaced its preStop hook\" are not given: the validating policy sees the pod after the mutation, when the 0 and the user's hook are gone",
	"bad lastcall annotations on pods or containers lastcall skips are not reported",
	"a pod created already carrying lastcall's record annotation (a copied pod spec), with no other lastcall annotation, gets only the warnings its record implies",
	"warnings quote values with Go's %q rules for quotes and backslashes only, and the API server prefixes each with the validating policy's and binding's names",
}

// NotAlreadyHandled is the webhook's not-already-handled matchCondition (charts/lastcall, config/webhook): the
// record annotation names exactly the pod's containers and native sidecars.
const NotAlreadyHandled = "!has(object.metadata.annotations) || !('lastcall.dev/injected' in object.metadata.annotations) || " +
	"!(size(object.metadata.annotations['lastcall.dev/injected'].split(',')) == size(object.spec.containers) + " +
	"(has(object.spec.initContainers) ? size(object.spec.initContainers.filter(c, has(c.restartPolicy) && c.restartPolicy == 'Always')) : 0) && " +
	"object.spec.containers.all(c, c.name in object.metadata.annotations['lastcall.dev/injected'].split(',').map(e, e.split('=')[0])) && " +
	"(!has(object.spec.initContainers) || object.spec.initContainers.all(c, !has(c.restartPolicy) || c.restartPolicy != 'Always' || " +
	"c.name in object.metadata.annotations['lastcall.dev/injected'].split(',').map(e, e.split('=')[0]))))"

// WarningSlots is how many warnings the validating policy can give for one pod (one per validation); more
// are joined into the last one.
const WarningSlots = 16

// handledSlots is WarningSlots for the warnings of pods the mutation has just handled.
const handledSlots = 3

// DefaultName names the policies of a render whose Options.Name is empty.
const DefaultName = "lastcall"

// Compile returns the policies, or an error naming every profile or setting that cannot be compiled: a
// broken policy is never returned.
func Compile(o Options) (*Policies, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Catalog == nil {
		o.Catalog = profiles.Builtins()
	}
	if o.NamespaceSelection == "" {
		o.NamespaceSelection = SelectOptIn
	}
	if o.FailurePolicy == "" {
		o.FailurePolicy = admissionregistrationv1.Ignore
	}
	if err := o.Policy.Validate(); err != nil {
		return nil, err
	}
	switch o.NamespaceSelection {
	case SelectOptIn, SelectAll:
	default:
		return nil, fmt.Errorf("namespace selection %q: must be %s or %s", o.NamespaceSelection, SelectOptIn, SelectAll)
	}
	c := &compiler{o: o, catalog: o.Catalog, limit: int64((o.Policy.MaxGracePeriod.Duration + 999999999) / 1e9)}
	// The profiles left out are still known by name, as the webhook knows them (uncompiledLiteral).
	c.names = strings.Join(sortedUnion(o.Catalog.Names(), o.Uncompiled), ", ")
	c.defProf = o.Policy.DefaultProfile
	if _, ok := o.Catalog.Get(c.defProf); !ok {
		c.defWarn = "lastcall: the cluster default profile " + c.defProf + " does not exist; using http"
		c.defProf = profiles.NameHTTP
	}
	for _, p := range o.Catalog.All() {
		if err := p.Validate(); err != nil {
			c.problems = append(c.problems, fmt.Sprintf("profile %s: %v", p.Name, err))
		}
		if p.DrainDelay%1e6 != 0 || p.DrainTimeout%1e6 != 0 {
			c.problems = append(c.problems, fmt.Sprintf("profile %s: drainDelay %s / drainTimeout %s: policy mode renders durations with millisecond precision", p.Name, p.DrainDelay, p.DrainTimeout))
		}
	}
	c.build()
	patch, err := c.patch()
	if err != nil {
		return nil, err
	}
	if len(c.problems) > 0 {
		return nil, fmt.Errorf("cannot compile the policy:\n  %s", strings.Join(c.problems, "\n  "))
	}
	// The engine again, for plain pods only (see plainPod).
	plainVars, plainPatch, err := c.plainPolicy()
	if err != nil {
		return nil, err
	}
	return c.objects(patch, plainVars, plainPatch), nil
}

// Layered is what Layer makes of a cluster's ShutdownProfiles.
type Layered struct {
	// Catalog is what this compiler can compile: the webhook's layering less the profiles in Problems (a
	// dropped override of a built-in leaves the built-in, as in the webhook).
	Catalog *profiles.Catalog
	// Webhook is the webhook's catalog of the same profiles (Options.Detect).
	Webhook *profiles.Catalog
	// Refused (by the layering, as the webhook refuses them) and Problems (policy mode only) say why a
	// profile was left out, keyed by name.
	Refused  map[string]error
	Problems map[string][]string
}

// Apply sets o's catalog from l: the compilable profiles, and the ones left out for pods to fall back on.
func (l Layered) Apply(o *Options) {
	o.Catalog, o.Detect, o.Uncompiled = l.Catalog, l.Webhook, UncompiledNames(l.Problems)
}

// Layer layers ShutdownProfile overrides over the built-ins as the webhook does (profiles.Catalog.Layer) and
// also leaves out each one this compiler cannot compile (ProfileProblems), so one bad profile never keeps the
// others out of the policy.
func Layer(overrides []profiles.Override) Layered {
	webhook, refused := profiles.Builtins().Layer(overrides)
	l := Layered{Catalog: webhook, Webhook: webhook, Refused: refused, Problems: map[string][]string{}}
	keep := make([]profiles.Override, 0, len(overrides))
	for _, o := range overrides {
		if _, bad := refused[o.Name]; bad {
			continue
		}
		if p, ok := webhook.Get(o.Name); ok {
			if probs := ProfileProblems(p); len(probs) > 0 {
				l.Problems[o.Name] = probs
				continue
			}
		}
		keep = append(keep, o)
	}
	if len(l.Problems) > 0 {
		l.Catalog, _ = profiles.Builtins().Layer(keep)
	}
	return l
}

func sortedUnion(a, b []string) []string {
	out := append(append([]string(nil), a...), b...)
	sort.Strings(out)
	return slices.Compact(out)
}

// UncompiledNames are the names in Layer's problems that are not built-ins, sorted: the profiles a pod can
// name that the webhook would apply and the policy cannot (Options.Uncompiled). An override of a built-in
// that cannot be compiled is not among them: its pods get the built-in, and its condition says so.
func UncompiledNames(problems map[string][]string) []string {
	builtins := profiles.Builtins()
	var out []string
	for n := range problems {
		if _, ok := builtins.Get(n); !ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// merge declares the plain way's variables beside the general way's in one policy: a variable the general
// way declares alike is shared, any other plain one whose name is taken is renamed "p" + Name (in every
// plain expression and the plain patch). The API server evaluates variables lazily, so a pod pays only for
// the ones its way reads.
func merge(general, plain []variable, plainPatch string) ([]variable, string) {
	have := map[string]string{}
	for _, v := range general {
		have[v.name] = v.expr
	}
	rename := map[string]string{}
	sub := func(expr string) string {
		return varRef.ReplaceAllStringFunc(expr, func(m string) string {
			if n, ok := rename[m[len("variables."):]]; ok {
				return "variables." + n
			}
			return m
		})
	}
	out := append([]variable(nil), general...)
	for _, v := range plain {
		v.expr = sub(v.expr)
		if e, ok := have[v.name]; ok {
			if e == v.expr {
				continue
			}
			n := "p" + strings.ToUpper(v.name[:1]) + v.name[1:]
			for _, taken := have[n]; taken; _, taken = have[n] {
				n = "p" + n
			}
			rename[v.name], v.name = n, n
		}
		have[v.name] = v.expr
		out = append(out, v)
	}
	return out, sub(plainPatch)
}

func (c *compiler) variables(vars []variable) []admissionregistrationv1.Variable {
	out := make([]admissionregistrationv1.Variable, len(vars))
	for i, v := range vars {
		out[i] = admissionregistrationv1.Variable{Name: v.name, Expression: v.expr}
	}
	return out
}

func (c *compiler) objects(patch string, plainVars []variable, plainPatch string) *Policies {
	o := c.o
	fp := o.FailurePolicy
	labels := map[string]string{"app.kubernetes.io/name": "lastcall", "app.kubernetes.io/component": "admission-policy"}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Labels: labels, Annotations: map[string]string{mutate.AnnotationVersion: o.Version}}
	}
	constraints := &admissionregistrationv1.MatchResources{
		ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		}}},
	}
	selection := c.matchResources()
	conditions := []admissionregistrationv1.MatchCondition{
		{Name: "not-windows", Expression: "!has(object.spec.os) || object.spec.os.name != 'windows'"},
		{Name: "not-mirror-pod", Expression: "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)"},
		{Name: "not-opted-out", Expression: "!has(object.metadata.annotations) || !(" + lit(mutate.AnnotationInject) + " in object.metadata.annotations) || !(object.metadata.annotations[" + lit(mutate.AnnotationInject) + "].trim().lowerAscii() in " + litList(mutate.InjectOptOutValues()) + ")"},
	}
	// One condition per policy: the API server evaluates every matchCondition of every policy on each pass
	// of the admission chain (and the mutating chain runs twice when a policy changes the pod), each in its
	// own program with its own activation, while && stops at the first false part. The parts are the
	// webhook's conditions, cheapest first, then the policy's own.
	with := func(extra ...admissionregistrationv1.MatchCondition) []admissionregistrationv1.MatchCondition {
		parts := make([]string, 0, len(conditions)+len(extra))
		for _, c := range append(append([]admissionregistrationv1.MatchCondition(nil), conditions...), extra...) {
			parts = append(parts, "("+c.Expression+")")
		}
		return []admissionregistrationv1.MatchCondition{{Name: "lastcall-serves", Expression: strings.Join(parts, " && ")}}
	}
	plain := c.plainPod()
	out := &Policies{plain: plain}
	mutating := func(name, patch string, vars []variable, conds []admissionregistrationv1.MatchCondition) {
		p := &admissionregistrationv1.MutatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicy"},
			ObjectMeta: meta(name),
			Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
				MatchConstraints: constraints.DeepCopy(),
				Variables:        c.variables(prune(vars, patch)),
				Mutations: []admissionregistrationv1.Mutation{{
					PatchType: admissionregistrationv1.PatchTypeJSONPatch,
					JSONPatch: &admissionregistrationv1.JSONPatch{Expression: patch},
				}},
				FailurePolicy:      &fp,
				MatchConditions:    conds,
				ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
			},
		}
		b := &admissionregistrationv1.MutatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicyBinding"},
			ObjectMeta: meta(name),
			Spec:       admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: name, MatchResources: selection.DeepCopy()},
		}
		out.Mutating = append(out.Mutating, p)
		out.MutatingBindings = append(out.MutatingBindings, b)
	}
	// One mutating policy with both ways (plainPod picks the plain one): on its second pass the API server
	// runs only the policies that matched on the first, so a pod the plain way injected that another mutator
	// then changed (a mesh's injector adding containers) must find the policy that ran on it able to take
	// the general way. Two policies with exclusive conditions left those containers unhandled
	// (TestAnotherMutatorInPolicyMode). The policy's own change makes the API server run the mutating
	// chain again (reinvocationPolicy IfNeeded), and on a pod lastcall has handled whose container set is
	// unchanged the engine changes nothing: the webhook's condition spares that second evaluation here too.
	vars, plainPatch := merge(c.vars, plainVars, plainPatch)
	mutating(o.Name, "("+plain+") ? ("+plainPatch+") : ("+patch+")", vars, with(
		admissionregistrationv1.MatchCondition{Name: "not-already-handled", Expression: NotAlreadyHandled}))

	// warningSlots are validations that give variables.<list>'s warnings one per slot, the last slot joining
	// the rest. In strict mode a pod the strict policy denies gets no warnings.
	warningSlots := func(list string, slots int) []admissionregistrationv1.Validation {
		guard := ""
		if o.Policy.Strict {
			guard = "size(variables.denyList) > 0 || "
		}
		out := make([]admissionregistrationv1.Validation, 0, slots)
		for i := 0; i < slots; i++ {
			v := admissionregistrationv1.Validation{
				Expression: fmt.Sprintf("%ssize(variables.%s) <= %d", guard, list, i),
				// The API server evaluates every message expression, failed validation or not: an index
				// out of range would be an error (and its cost) on every pod.
				MessageExpression: fmt.Sprintf("size(variables.%s) > %d ? variables.%s[%d] : ''", list, i, list, i),
				Reason:            ptr(metav1.StatusReasonInvalid),
			}
			if i == slots-1 {
				v.MessageExpression = fmt.Sprintf("size(variables.%s) > %d ? variables.%s.slice(%d, size(variables.%s)).join('; ') : ''", list, i, list, i, list)
			}
			out = append(out, v)
		}
		return out
	}
	validating := func(name string, validations []admissionregistrationv1.Validation, vars []variable, conds []admissionregistrationv1.MatchCondition, action admissionregistrationv1.ValidationAction) {
		var roots []string
		for _, v := range validations {
			roots = append(roots, v.Expression, v.MessageExpression)
		}
		p := &admissionregistrationv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: meta(name),
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: constraints.DeepCopy(),
				Variables:        c.variables(prune(vars, roots...)),
				Validations:      validations,
				FailurePolicy:    &fp,
				MatchConditions:  conds,
			},
		}
		b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
			ObjectMeta: meta(name),
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName: name, MatchResources: selection.DeepCopy(),
				ValidationActions: []admissionregistrationv1.ValidationAction{action},
			},
		}
		out.Validating = append(out.Validating, p)
		out.ValidatingBindings = append(out.ValidatingBindings, b)
	}
	all := append(append([]variable(nil), c.vars...), c.warnVars...)
	if handled := c.handledPod(); handled != "" {
		validating(o.Name+"-warnings", warningSlots("warnings", WarningSlots), c.vars, with(admissionregistrationv1.MatchCondition{Name: "not-handled", Expression: "!(" + handled + ")"}), admissionregistrationv1.Warn)
		// The short way has at most a namespace warning and one per supervised container: few slots, the
		// last joining the rest (the API server runs every slot's two programs on every pod).
		validating(o.Name+"-warnings-handled", warningSlots("warningsFast", handledSlots), all, with(admissionregistrationv1.MatchCondition{Name: "handled", Expression: handled}), admissionregistrationv1.Warn)
	} else {
		validating(o.Name+"-warnings", warningSlots("warnings", WarningSlots), c.vars, with(), admissionregistrationv1.Warn)
	}
	if o.Policy.Strict {
		validating(o.Name+"-strict", []admissionregistrationv1.Validation{{
			Expression:        "variables.skip != '' || size(variables.denyList) == 0",
			MessageExpression: "'lastcall (strict mode): ' + variables.denyList.join('; ')",
			Reason:            ptr(metav1.StatusReasonInvalid),
		}}, c.vars, with(), admissionregistrationv1.Deny)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// matchResources selects like the chart's webhook: never the system namespaces, opt-in by namespace label
// (or all namespaces but those labelled disabled), and never pods labelled lastcall.dev/inject=disabled.
func (c *compiler) matchResources() *admissionregistrationv1.MatchResources {
	excluded := []string{"kube-system", "kube-public", "kube-node-lease"}
	seen := map[string]bool{}
	for _, n := range excluded {
		seen[n] = true
	}
	for _, n := range c.o.ExcludeNamespaces {
		if !seen[n] {
			seen[n] = true
			excluded = append(excluded, n)
		}
	}
	ns := metav1.LabelSelectorRequirement{Key: mutate.LabelInject, Operator: metav1.LabelSelectorOpIn, Values: []string{"enabled", mutate.ManagedObserve}}
	if c.o.NamespaceSelection == SelectAll {
		ns = metav1.LabelSelectorRequirement{Key: mutate.LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}}
	}
	return &admissionregistrationv1.MatchResources{
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: excluded}, ns,
		}},
		ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: mutate.LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}},
		}},
	}
}

// Objects returns the policies in apply order (each policy before its binding).
func (p *Policies) Objects() []any {
	var out []any
	for i := range p.Mutating {
		out = append(out, p.Mutating[i], p.MutatingBindings[i])
	}
	for i := range p.Validating {
		out = append(out, p.Validating[i], p.ValidatingBindings[i])
	}
	return out
}

// YAML renders the policies as one multi-document stream with a header that states what they need and what
// they do not do. The output is byte-stable: the same inputs give the same bytes.
func (p *Policies) YAML() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# lastcall in policy mode: generated by `lastcall policy render`; do not edit.\n")
	fmt.Fprintf(&b, "# Needs Kubernetes >= 1.%d (admissionregistration.k8s.io/v1 MutatingAdmissionPolicy and ValidatingAdmissionPolicy).\n", MinKubernetesMinor)
	b.WriteString("# Not reproduced from the webhook (see docs/install.md):\n")
	for _, l := range Limitations {
		b.WriteString("#   - " + l + "\n")
	}
	for _, o := range p.Objects() {
		data, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return b.Bytes(), nil
}
