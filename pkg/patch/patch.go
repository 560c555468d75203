// Package patch turns what the engine changed in a pod into a JSONPatch (Pod, Encode), and applies such a
// patch to a decoded document (ApplyTree). It is the one diff of the project: the webhook returns the patch
// to the API server, and the CLI applies the same operations to the pod or pod template as the user wrote it,
// so the two cannot disagree on any pod.
package patch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	gomodjsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// Operation is one JSONPatch operation. Values the diff produces are json.RawMessage.
type Operation = gomodjsonpatch.JsonPatchOperation

// Pod diffs the typed original against the typed result. Both are marshaled by the same code, so fields
// unknown to our API types are absent from both sides and the patch never touches them; diffing against the
// raw request instead would "remove" every field newer than k8s.io/api.
//
// Only the fields the engine may change are marshaled and diffed, each on its own (the rest of a pod is often
// most of its bytes, and generic JSON decoding is the admission path's largest cost). TestPatchCoversEngine
// holds the engine to that list: a full-pod diff must equal this one for every golden case.
//
// Every path is under /metadata or /spec, so the patch applies to a PodTemplateSpec as well as to a Pod.
func Pod(original, mutated *corev1.Pod) ([]Operation, error) {
	var ops []Operation
	// Labels and annotations are string maps: diffed as maps, without marshaling and decoding them (the
	// operations are the ones diffJSON would produce, in the same order).
	var err error
	if ops, err = diffStringMap("/metadata/annotations", original.Annotations, mutated.Annotations, ops); err != nil {
		return nil, err
	}
	if ops, err = diffStringMap("/metadata/labels", original.Labels, mutated.Labels, ops); err != nil {
		return nil, err
	}
	for _, f := range mutableFields {
		a, err := json.Marshal(f.get(original))
		if err != nil {
			return nil, fmt.Errorf("marshal original %s: %w", f.path, err)
		}
		b, err := json.Marshal(f.get(mutated))
		if err != nil {
			return nil, fmt.Errorf("marshal mutated %s: %w", f.path, err)
		}
		if bytes.Equal(a, b) {
			continue
		}
		// A field absent before is added whole; present before, it is diffed so that what our types do not
		// know inside it (a newer container field) is left alone.
		switch {
		case bytes.Equal(a, null):
			ops = append(ops, gomodjsonpatch.NewOperation("add", f.path, json.RawMessage(b)))
		case bytes.Equal(b, null):
			ops = append(ops, gomodjsonpatch.NewOperation("remove", f.path, nil))
		default:
			if ops, err = diffJSON(f.path, a, b, ops); err != nil {
				return nil, fmt.Errorf("diff %s: %w", f.path, err)
			}
		}
	}
	return ops, nil
}

var null = []byte("null")

// Encode writes the operations as a JSONPatch document. Values are raw JSON from our own marshaling, so they
// are copied as they are instead of being re-validated by encoding/json (a full rescan per value).
func Encode(ops []Operation) []byte {
	buf := make([]byte, 0, 1024)
	buf = append(buf, '[')
	for i, op := range ops {
		if i > 0 {
			buf = append(buf, ',')
		}
		path, _ := json.Marshal(op.Path)
		buf = append(buf, `{"op":"`...)
		buf = append(buf, op.Operation...)
		buf = append(buf, `","path":`...)
		buf = append(buf, path...)
		if op.Value != nil {
			buf = append(buf, `,"value":`...)
			if raw, ok := op.Value.(json.RawMessage); ok {
				buf = append(buf, raw...)
			} else {
				v, _ := json.Marshal(op.Value)
				buf = append(buf, v...)
			}
		}
		buf = append(buf, '}')
	}
	return append(buf, ']')
}

// mutableFields are the parts of a Pod the engine writes, with their JSON pointers.
var mutableFields = []struct {
	path string
	get  func(*corev1.Pod) any
}{
	{"/spec/initContainers", func(p *corev1.Pod) any { return nilIfEmptySlice(p.Spec.InitContainers) }},
	{"/spec/containers", func(p *corev1.Pod) any { return p.Spec.Containers }},
	{"/spec/volumes", func(p *corev1.Pod) any { return nilIfEmptySlice(p.Spec.Volumes) }},
	{"/spec/terminationGracePeriodSeconds", func(p *corev1.Pod) any { return p.Spec.TerminationGracePeriodSeconds }},
	{"/spec/os", func(p *corev1.Pod) any { return p.Spec.OS }},
}

// diffStringMap appends the operations that turn map a into b at path: the whole map added or removed when
// one side is empty, else one operation per changed key, keys sorted (deterministic patches).
func diffStringMap(path string, a, b map[string]string, ops []Operation) ([]Operation, error) {
	switch {
	case len(a) == 0 && len(b) == 0:
		return ops, nil
	case len(a) == 0:
		v, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("marshal mutated %s: %w", path, err)
		}
		return append(ops, gomodjsonpatch.NewOperation("add", path, json.RawMessage(v))), nil
	case len(b) == 0:
		return append(ops, gomodjsonpatch.NewOperation("remove", path, nil)), nil
	}
	var keys []string
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := path + "/" + escapePointer(k)
		_, inA := a[k]
		bv, inB := b[k]
		switch {
		case !inB:
			ops = append(ops, gomodjsonpatch.NewOperation("remove", p, nil))
		default:
			v, err := json.Marshal(bv)
			if err != nil {
				return nil, fmt.Errorf("marshal %s: %w", p, err)
			}
			op := "replace"
			if !inA {
				op = "add"
			}
			ops = append(ops, gomodjsonpatch.NewOperation(op, p, json.RawMessage(v)))
		}
	}
	return ops, nil
}

func nilIfEmptySlice[T any](s []T) any {
	if len(s) == 0 {
		return nil
	}
	return s
}
