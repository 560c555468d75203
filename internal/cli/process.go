package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"

	goyaml "go.yaml.in/yaml/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/patch"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// isList reports a List (v1 List, or a typed list such as DeploymentList as `kubectl get -o yaml` writes).
func isList(kind string) bool {
	return kind == "List" || (strings.HasSuffix(kind, "List") && len(kind) > 4)
}

// Namespace selection, as the chart's webhook configuration does it before the engine is ever called.
const (
	SelectorOptIn = "optIn"
	SelectorAll   = "all"
)

// alwaysExcluded are namespaces the chart's namespaceSelector never sends (the release namespace too, which
// the CLI cannot know).
var alwaysExcluded = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

// Namespaces describes the namespaces the documents are applied in.
type Namespaces struct {
	// Default is the namespace of documents without metadata.namespace.
	Default string
	// Labels and Annotations apply to every namespace. Nil Labels means "opted in"
	// (lastcall.dev/inject=enabled): the usual reason to run lastcall on a manifest is that it will be injected.
	Labels      map[string]string
	Annotations map[string]string
	// Selector is optIn (only namespaces labelled lastcall.dev/inject=enabled) or all.
	Selector string
}

// lookup returns the namespace metadata for name, or why the webhook would never see pods there.
func (n Namespaces) lookup(name string) (mutate.Namespace, string) {
	labels := n.Labels
	if labels == nil {
		labels = map[string]string{mutate.LabelInject: "enabled"}
	}
	ns := mutate.Namespace{Name: name, Labels: labels, Annotations: n.Annotations}
	if alwaysExcluded[name] {
		return ns, "namespace " + name + " is always excluded by the webhook configuration"
	}
	if v := labels[mutate.LabelInject]; n.Selector != SelectorAll && v != "enabled" && v != mutate.ManagedObserve {
		return ns, fmt.Sprintf("namespace %s is not opted in: the webhook's default namespaceSelector (optIn) needs the label %s=enabled (or =observe) (add it to --namespace-labels, or use --namespace-selector all)", name, mutate.LabelInject)
	}
	return ns, ""
}

// Injector runs the engine over documents. It holds nothing that changes, so documents are processed in
// parallel.
type Injector struct {
	Engine     *mutate.Engine
	Catalog    *profiles.Catalog
	Namespaces Namespaces
	// Kinds says where each kind keeps its pod template; nil means builtinKinds.
	Kinds Kinds
}

func (in *Injector) kinds() Kinds {
	if in.Kinds == nil {
		return builtinKinds
	}
	return in.Kinds
}

// objRef names one pod or pod template in the input for messages: the document, the item inside a List, the
// kind and the name.
type objRef struct {
	Document  int    `json:"document"`
	Line      int    `json:"line"`
	Items     []int  `json:"items,omitempty"`
	Kind      string `json:"kind"`
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace"`
	// Template is the pod template's path in the object ("spec.template"); empty for a Pod.
	Template string `json:"template,omitempty"`
}

func (r objRef) String() string {
	var b strings.Builder
	b.WriteString("document ")
	b.WriteString(strconv.Itoa(r.Document))
	for _, i := range r.Items {
		b.WriteString(" item ")
		b.WriteString(strconv.Itoa(i))
	}
	if r.Kind != "" {
		b.WriteString(" ")
		b.WriteString(r.Kind)
		if r.Name != "" {
			b.WriteString("/")
			b.WriteString(r.Name)
		}
	}
	return b.String()
}

// podReport is the outcome for one pod or pod template.
type podReport struct {
	Ref objRef
	// Result is nil when the webhook would never be called for the pod (NamespaceSkip says why).
	Result        *mutate.Result
	NamespaceSkip string
	// KindSkip is set for a document that holds containers but is not of a kind inject reads (or of one it
	// leaves alone on purpose): why, and how to make it injected.
	KindSkip string
	// Denied is set when the policy is strict and the webhook would refuse the pod.
	Denied string
}

// docResult is the outcome for one input document.
type docResult struct {
	// out replaces the document's text; nil keeps the original bytes.
	out  []byte
	pods []podReport
	err  error
}

// InputError is bad input: the document could not be read, or a field has the wrong type. It names the
// document (and the field when known), and maps to exit code 2.
type InputError struct {
	Ref   objRef
	Field string
	Err   error
}

func (e *InputError) Error() string {
	where := e.Ref.String()
	if e.Ref.Line > 0 {
		where += " (line " + strconv.Itoa(e.Ref.Line) + ")"
	}
	if e.Field != "" {
		return where + ": field " + e.Field + ": " + e.Err.Error()
	}
	return where + ": " + e.Err.Error()
}

func (e *InputError) Unwrap() error { return e.Err }

// processAll runs every document, in parallel, and returns the results in input order.
func (in *Injector) processAll(docs []document) []docResult {
	out := make([]docResult, len(docs))
	workers := min(runtime.GOMAXPROCS(0), len(docs))
	if workers <= 1 {
		for i := range docs {
			out[i] = in.document(&docs[i])
		}
		return out
	}
	var wg sync.WaitGroup
	next := make(chan int, workers)
	for range workers {
		wg.Go(func() {
			for i := range next {
				out[i] = in.document(&docs[i])
			}
		})
	}
	for i := range docs {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

func (in *Injector) document(d *document) docResult {
	ref := objRef{Document: d.index, Line: d.line}
	if !d.json && in.passthrough(d.text) {
		return docResult{}
	}
	obj, err := decodeDocument(d)
	if err != nil {
		return docResult{err: &InputError{Ref: ref, Err: err}}
	}
	if obj == nil {
		return docResult{}
	}
	var res docResult
	changed, err := in.object(obj, ref, &res.pods)
	if err != nil {
		res.err = err
		return res
	}
	if !changed {
		return res
	}
	res.out, res.err = render(d, obj)
	return res
}

// decodeDocument reads a document into a generic tree: JSON objects with json.Number (a float64 round trip
// would corrupt integers above 2^53), YAML as sigs.k8s.io/yaml.YAMLToJSON reads it (same YAML library, same
// key conversion) but without its JSON encode and decode, which cost a fifth of inject's time. It returns nil
// for a document that is not an object (empty, a comment, a scalar): not ours to judge.
func decodeDocument(d *document) (map[string]any, error) {
	if d.json {
		dec := json.NewDecoder(bytes.NewReader(d.text))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("not valid JSON: %w", err)
		}
		obj, _ := v.(map[string]any)
		return obj, nil
	}
	var v any
	if err := goyaml.Unmarshal(d.text, &v); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", &fileLineError{err: err, offset: d.line - 1})
	}
	j, err := jsonable(v)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	obj, _ := j.(map[string]any)
	return obj, nil
}

// fileLineError moves the YAML library's "line N", counted from the document's first line, to the line in
// the file, which is what an editor or a CI log annotation needs.
type fileLineError struct {
	err    error
	offset int
}

var yamlLineRE = regexp.MustCompile(`\bline (\d+)\b`)

func (e *fileLineError) Error() string {
	return yamlLineRE.ReplaceAllStringFunc(e.err.Error(), func(m string) string {
		n, err := strconv.Atoi(m[len("line "):])
		if err != nil {
			return m
		}
		return "line " + strconv.Itoa(n+e.offset)
	})
}

func (e *fileLineError) Unwrap() error { return e.err }

// jsonable turns what the YAML library decodes into JSON's data model, with the key conversions of
// sigs.k8s.io/yaml (YAML 1.1 reads the key "on" as a bool; JSON has only string keys).
func jsonable(v any) (any, error) {
	switch x := v.(type) {
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			var key string
			switch tk := k.(type) {
			case string:
				key = tk
			case int:
				key = strconv.Itoa(tk)
			case int64:
				key = strconv.FormatInt(tk, 10)
			case uint64:
				key = strconv.FormatUint(tk, 10)
			case float64:
				key = strconv.FormatFloat(tk, 'g', -1, 32)
			case bool:
				key = strconv.FormatBool(tk)
			default:
				return nil, fmt.Errorf("unsupported map key %v of type %T", k, k)
			}
			var err error
			if out[key], err = jsonable(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case []any:
		for i, e := range x {
			var err error
			if x[i], err = jsonable(e); err != nil {
				return nil, err
			}
		}
		return x, nil
	case int:
		return int64(x), nil
	}
	return v, nil
}

// render writes a changed document in its original format. YAML comes out as sigs.k8s.io/yaml.JSONToYAML
// writes it (what kubectl and the goldens use): by fastYAML when it can, else by the same YAML library, given
// the tree directly (JSONToYAML's second parse was a third of inject's time).
func render(d *document, obj map[string]any) ([]byte, error) {
	if d.json || isJSONText(d.text) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(obj); err != nil {
			return nil, fmt.Errorf("document %d: encode: %w", d.index, err)
		}
		out := buf.Bytes()
		if d.json {
			// The newline after a JSON value is part of the next separator.
			out = bytes.TrimSuffix(out, []byte("\n"))
		}
		return out, nil
	}
	tree := yamlValue(obj).(map[string]any)
	y, ok := fastYAML(tree)
	if !ok {
		var err error
		if y, err = goyaml.Marshal(tree); err != nil {
			return nil, fmt.Errorf("document %d: encode: %w", d.index, err)
		}
	}
	return append(bytes.Clone(leadingComments(d.text)), y...), nil
}

// yamlValue turns json.Number into the integer or float the YAML library writes unquoted (it would quote a
// json.Number, a string type, turning a port into a string).
func yamlValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = yamlValue(e)
		}
	case []any:
		for i, e := range x {
			x[i] = yamlValue(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return u
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return string(x)
	}
	return v
}

// passthrough reads the kind of a block-style YAML document from its top-level "kind:" line and reports
// whether it certainly holds no pod template and no containers, so that ConfigMaps, Services and the like are
// copied without being parsed (parsing is most of inject's cost). Anything unusual (no such line, two of them,
// flow style, a quoted or anchored value) goes through the parser, and so does any document whose text says
// "containers": a kind inject does not read is reported when it holds some.
func (in *Injector) passthrough(text []byte) bool {
	var kind, apiVersion string
	for rest := text; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(line) > 0 && (line[0] == '{' || line[0] == '[') {
			return false
		}
		for _, f := range [2]struct {
			key string
			v   *string
		}{{"kind:", &kind}, {"apiVersion:", &apiVersion}} {
			if !bytes.HasPrefix(line, []byte(f.key)) {
				continue
			}
			v := bytes.TrimSpace(line[len(f.key):])
			if i := bytes.Index(v, []byte(" #")); i >= 0 {
				v = bytes.TrimSpace(v[:i])
			}
			if *f.v != "" || len(v) == 0 || !isPlainWord(v) {
				return false
			}
			*f.v = string(v)
		}
	}
	if kind == "" || isList(kind) {
		return false
	}
	if _, _, known := in.kinds().lookup(apiVersion, kind); known {
		return false
	}
	return !bytes.Contains(text, []byte("containers"))
}

func isPlainWord(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '/') {
			return false
		}
	}
	return true
}

func metaString(obj map[string]any, key string) string {
	m, _ := obj["metadata"].(map[string]any)
	s, _ := m[key].(string)
	return s
}

// object injects one object (recursing into List items) and reports whether it changed.
func (in *Injector) object(obj map[string]any, ref objRef, pods *[]podReport) (bool, error) {
	ref.Kind, _ = obj["kind"].(string)
	ref.Name = metaString(obj, "name")
	if ref.Name == "" {
		ref.Name = metaString(obj, "generateName")
	}
	ref.Namespace = metaString(obj, "namespace")
	if ref.Namespace == "" {
		ref.Namespace = in.Namespaces.Default
	}
	if isList(ref.Kind) {
		items, _ := obj["items"].([]any)
		changed := false
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			sub := ref
			sub.Items = append(append([]int(nil), ref.Items...), i)
			c, err := in.object(m, sub, pods)
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
		return changed, nil
	}
	apiVersion, _ := obj["apiVersion"].(string)
	k, tk, known := in.kinds().lookup(apiVersion, ref.Kind)
	if !known || tk.skip != "" {
		if why := leftAlone(k, tk, known, obj); why != "" {
			*pods = append(*pods, podReport{Ref: ref, KindSkip: why})
		}
		return false, nil
	}
	path := tk.path
	tmpl := obj
	for _, k := range path {
		next, ok := tmpl[k].(map[string]any)
		if !ok {
			// A partial object (a kustomize patch, say) has no template to inject.
			return false, nil
		}
		tmpl = next
	}
	ref.Template = strings.Join(path, ".")
	return in.pod(tmpl, ref, pods)
}

// pod runs the engine on one pod or pod template (given as the user's generic object) and applies the
// webhook's patch to it.
func (in *Injector) pod(tmpl map[string]any, ref objRef, pods *[]podReport) (bool, error) {
	raw, err := json.Marshal(tmpl)
	if err != nil {
		return false, &InputError{Ref: ref, Err: fmt.Errorf("encode: %w", err)}
	}
	isPod := ref.Template == ""
	pod := &corev1.Pod{}
	if isPod {
		err = json.Unmarshal(raw, pod)
	} else {
		t := &corev1.PodTemplateSpec{}
		err = json.Unmarshal(raw, t)
		pod.ObjectMeta, pod.Spec = t.ObjectMeta, t.Spec
	}
	if err != nil {
		return false, typeError(ref, err)
	}
	// The engine sees the namespace the pod will run in; the patch never touches it, so the document keeps
	// what it said (usually nothing).
	if pod.Namespace == "" {
		pod.Namespace = ref.Namespace
	}
	rep := podReport{Ref: ref}
	ns, skip := in.Namespaces.lookup(pod.Namespace)
	if skip != "" {
		rep.NamespaceSkip = skip
		*pods = append(*pods, rep)
		return false, nil
	}
	res := in.Engine.Mutate(pod, ns, in.Catalog)
	rep.Result = res
	// Reports live until the whole input is done; the mutated pod is only needed here, and keeping 10,000 of
	// them doubled the live heap.
	mutated := res.Pod
	res.Pod = nil
	if msg, deny := res.DenyMessage(in.Engine.Policy().Strict); deny {
		rep.Denied = msg
		*pods = append(*pods, rep)
		return false, nil
	}
	*pods = append(*pods, rep)
	if res.Skip != nil {
		return false, nil
	}
	// The webhook's own patch, applied to the template as the user wrote it: what the engine did not change
	// (fields our types do not know, the user's spelling of a quantity) stays as written.
	ops, err := patch.Pod(pod, mutated)
	if err != nil {
		return false, fmt.Errorf("%s: %w", ref, err)
	}
	if len(ops) == 0 {
		// Already injected (or nothing to do): the document stays byte for byte.
		return false, nil
	}
	if err := patch.ApplyTree(tmpl, ops); err != nil {
		return false, fmt.Errorf("%s: %w", ref, err)
	}
	return true, nil
}

// typeError names the field of a type mismatch with its full path in the document.
func typeError(ref objRef, err error) error {
	prefix := ""
	if ref.Template != "" {
		prefix = ref.Template + "."
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return &InputError{Ref: ref, Field: prefix + te.Field, Err: fmt.Errorf("got a JSON %s, want %s", te.Value, te.Type)}
	}
	return &InputError{Ref: ref, Err: fmt.Errorf("not a valid pod template: %w", err)}
}
