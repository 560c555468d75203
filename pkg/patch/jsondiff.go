package patch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	gomodjsonpatch "gomodules.xyz/jsonpatch/v2"
)

// diffJSON appends the operations that turn document a into b. It decodes lazily, one level at a time into
// raw messages, and descends only where the bytes differ: a pod's unchanged parts (most of it) are compared,
// never decoded into generic maps, which is what made a whole-document diff the admission path's largest cost.
// Values in the operations stay raw JSON. TestPatchCoversEngine checks the result against
// gomodules.xyz/jsonpatch's CreatePatch for every golden case.
func diffJSON(path string, a, b []byte, ops []Operation) ([]Operation, error) {
	a, b = bytes.TrimSpace(a), bytes.TrimSpace(b)
	if bytes.Equal(a, b) {
		return ops, nil
	}
	switch {
	case len(a) > 0 && len(b) > 0 && a[0] == '{' && b[0] == '{':
		var am, bm map[string]json.RawMessage
		if err := json.Unmarshal(a, &am); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := json.Unmarshal(b, &bm); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		keys := make([]string, 0, len(am)+len(bm))
		for k := range am {
			keys = append(keys, k)
		}
		for k := range bm {
			if _, ok := am[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys) // deterministic patches
		var err error
		for _, k := range keys {
			p := path + "/" + escapePointer(k)
			av, inA := am[k]
			bv, inB := bm[k]
			switch {
			case !inB:
				ops = append(ops, gomodjsonpatch.NewOperation("remove", p, nil))
			case !inA:
				ops = append(ops, gomodjsonpatch.NewOperation("add", p, bv))
			default:
				if ops, err = diffJSON(p, av, bv, ops); err != nil {
					return nil, err
				}
			}
		}
		return ops, nil
	case len(a) > 0 && len(b) > 0 && a[0] == '[' && b[0] == '[':
		var as, bs []json.RawMessage
		if err := json.Unmarshal(a, &as); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := json.Unmarshal(b, &bs); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(as) != len(bs) {
			if out, ok, err := diffByName(path, as, bs, ops); ok || err != nil {
				return out, err
			}
		}
		var err error
		n := min(len(as), len(bs))
		for i := 0; i < n; i++ {
			if ops, err = diffJSON(path+"/"+strconv.Itoa(i), as[i], bs[i], ops); err != nil {
				return nil, err
			}
		}
		for i := n; i < len(bs); i++ {
			ops = append(ops, gomodjsonpatch.NewOperation("add", path+"/"+strconv.Itoa(i), bs[i]))
		}
		// Remove from the end, so earlier indexes stay valid.
		for i := len(as) - 1; i >= n; i-- {
			ops = append(ops, gomodjsonpatch.NewOperation("remove", path+"/"+strconv.Itoa(i), nil))
		}
		return ops, nil
	default:
		return append(ops, gomodjsonpatch.NewOperation("replace", path, json.RawMessage(b))), nil
	}
}

// escapePointer escapes a key for a JSON pointer (RFC 6901): annotation keys contain '/'.
func escapePointer(k string) string {
	if !strings.ContainsAny(k, "~/") {
		return k
	}
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// diffByName handles lists of named objects (containers, volumes) that grew or shrank: it matches elements by
// name, so an element inserted in front (the shim's init container goes first) is an insertion, and each user
// element is diffed against itself. A positional diff would instead rewrite the user's first init container into
// the shim field by field, carrying fields our API types do not know onto the wrong container. ok is false when
// the lists are not uniquely named or the order of the kept elements changed; the caller then diffs by position.
func diffByName(path string, as, bs []json.RawMessage, ops []Operation) ([]Operation, bool, error) {
	an, ok := names(as)
	if !ok {
		return ops, false, nil
	}
	bn, ok := names(bs)
	if !ok {
		return ops, false, nil
	}
	inB := make(map[string]bool, len(bn))
	for _, n := range bn {
		inB[n] = true
	}
	// Removals first (from the end), then the kept elements must appear in b in the same order.
	var kept []int
	for i := len(an) - 1; i >= 0; i-- {
		if !inB[an[i]] {
			ops = append(ops, gomodjsonpatch.NewOperation("remove", path+"/"+strconv.Itoa(i), nil))
		}
	}
	for i := range an {
		if inB[an[i]] {
			kept = append(kept, i)
		}
	}
	k := 0
	var err error
	for j := range bs {
		p := path + "/" + strconv.Itoa(j)
		if k < len(kept) && an[kept[k]] == bn[j] {
			if ops, err = diffJSON(p, as[kept[k]], bs[j], ops); err != nil {
				return nil, true, err
			}
			k++
			continue
		}
		for _, i := range kept[k:] {
			if an[i] == bn[j] { // a kept element moved: not an insertion-only change
				return nil, false, nil
			}
		}
		ops = append(ops, gomodjsonpatch.NewOperation("add", p, bs[j]))
	}
	if k != len(kept) {
		return nil, false, nil
	}
	return ops, true, nil
}

// names returns the "name" of every element, or ok=false unless all are objects with distinct names.
func names(list []json.RawMessage) ([]string, bool) {
	out := make([]string, len(list))
	seen := make(map[string]bool, len(list))
	for i, raw := range list {
		name, ok := leadingName(raw)
		if !ok {
			var v struct {
				Name *string `json:"name"`
			}
			if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &v) != nil || v.Name == nil {
				return nil, false
			}
			name = *v.Name
		}
		if seen[name] {
			return nil, false
		}
		seen[name] = true
		out[i] = name
	}
	return out, true
}

// leadingName reads the name of an element encoding/json wrote from a Container or Volume: Name is their first
// field, so the text starts with {"name":"...". Names are DNS labels; anything escaped takes the slow path.
func leadingName(raw []byte) (string, bool) {
	const prefix = `{"name":"`
	if !bytes.HasPrefix(raw, []byte(prefix)) {
		return "", false
	}
	rest := raw[len(prefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return "", false
	}
	return string(rest[:end]), true
}
