package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
)

// diffJSON appends the operations that turn document a into b. It decodes lazily, one level at a time into
// raw messages, and descends only where the bytes differ: a pod's unchanged parts (most of it) are compared,
// never decoded into generic maps, which is what made a whole-document diff the admission path's largest cost.
// Values in the operations stay raw JSON. TestPatchCoversEngine checks the result against
// gomodules.xyz/jsonpatch's CreatePatch for every golden case.
func diffJSON(path string, a, b []byte, ops []jsonpatch.JsonPatchOperation) ([]jsonpatch.JsonPatchOperation, error) {
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
				ops = append(ops, jsonpatch.NewOperation("remove", p, nil))
			case !inA:
				ops = append(ops, jsonpatch.NewOperation("add", p, bv))
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
		var err error
		n := min(len(as), len(bs))
		for i := 0; i < n; i++ {
			if ops, err = diffJSON(path+"/"+strconv.Itoa(i), as[i], bs[i], ops); err != nil {
				return nil, err
			}
		}
		for i := n; i < len(bs); i++ {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/"+strconv.Itoa(i), bs[i]))
		}
		// Remove from the end, so earlier indexes stay valid.
		for i := len(as) - 1; i >= n; i-- {
			ops = append(ops, jsonpatch.NewOperation("remove", path+"/"+strconv.Itoa(i), nil))
		}
		return ops, nil
	default:
		return append(ops, jsonpatch.NewOperation("replace", path, json.RawMessage(b))), nil
	}
}

// escapePointer escapes a key for a JSON pointer (RFC 6901): annotation keys contain '/'.
func escapePointer(k string) string {
	if !strings.ContainsAny(k, "~/") {
		return k
	}
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}
