package cli

import "reflect"

// merge3 applies the change from a to b onto r and returns the result. a and b are the typed pod (template)
// before and after the engine, marshaled by the same code; r is the same object as the user wrote it, decoded
// generically. Only what differs between a and b is written into r, so everything our API types do not know
// (a field newer than k8s.io/api, an extension) survives, and so does everything the engine did not touch
// (the user's spelling of a quantity, an explicit null).
//
// Lists of objects with unique names (containers, init containers, volumes) are matched by name, not by
// index: the engine puts its shim init container first, and an index-wise diff such as gomodules' jsonpatch
// would rewrite the user's first init container into lastcall-shim field by field, moving the fields our types
// do not know onto the wrong container. Other lists are matched by index (the engine only appends to them).
func merge3(a, b, r any) any {
	if reflect.DeepEqual(a, b) {
		return r
	}
	switch bv := b.(type) {
	case map[string]any:
		am, aok := a.(map[string]any)
		rm, rok := r.(map[string]any)
		if !aok || !rok {
			return b
		}
		out := make(map[string]any, len(rm)+len(bv))
		for k, v := range rm {
			out[k] = v
		}
		for k, bk := range bv {
			ak, had := am[k]
			if had && reflect.DeepEqual(ak, bk) {
				// Unchanged: keep what the user wrote, including its absence (our types write empty structs
				// such as "resources: {}" that the user never had).
				continue
			}
			rk, rhas := rm[k]
			if !had {
				out[k] = bk
				continue
			}
			if !rhas {
				if _, isMap := ak.(map[string]any); !isMap {
					out[k] = bk
					continue
				}
				// Our types wrote an object the user left out (a template's metadata): add only what changed
				// inside it, not the empty defaults around it.
				rk = map[string]any{}
			}
			out[k] = merge3(ak, bk, rk)
		}
		for k := range am {
			if _, ok := bv[k]; !ok {
				delete(out, k)
			}
		}
		return out
	case []any:
		aa, aok := a.([]any)
		ra, rok := r.([]any)
		if !aok || !rok || len(ra) != len(aa) {
			return b
		}
		if ai, ok := byName(aa); ok {
			if _, ok := byName(bv); ok {
				out := make([]any, 0, len(bv))
				for _, e := range bv {
					n := elemName(e)
					if i, found := ai[n]; found && elemName(ra[i]) == n {
						out = append(out, merge3(aa[i], e, ra[i]))
					} else {
						out = append(out, e)
					}
				}
				return out
			}
		}
		out := make([]any, len(bv))
		for i := range bv {
			if i < len(aa) {
				out[i] = merge3(aa[i], bv[i], ra[i])
			} else {
				out[i] = bv[i]
			}
		}
		return out
	}
	return b
}

// byName indexes a list whose elements are all objects with a unique string "name".
func byName(l []any) (map[string]int, bool) {
	if len(l) == 0 {
		return nil, false
	}
	m := make(map[string]int, len(l))
	for i, e := range l {
		n := elemName(e)
		if n == "" {
			return nil, false
		}
		if _, dup := m[n]; dup {
			return nil, false
		}
		m[n] = i
	}
	return m, true
}

func elemName(e any) string {
	m, ok := e.(map[string]any)
	if !ok {
		return ""
	}
	n, _ := m["name"].(string)
	return n
}
