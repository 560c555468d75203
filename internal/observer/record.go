package observer

import (
	"fmt"
	"strings"
)

// Profile label values for containers the record does not name.
const (
	// ProfileNone: the container is not in a valid record: lastcall left its shutdown alone (profile none, a
	// skipped container, or an observe-mode pod, which has no record).
	ProfileNone = "none"
	// ProfileUnknown: the record annotation could not be parsed (edited by hand), so which profile the
	// container had cannot be told.
	ProfileUnknown = "unknown"
)

// parseRecord reads the lastcall.dev/injected record, "container=profile,...". On a malformed entry it returns
// the entries it could read and an error naming the bad one; the caller labels the containers it cannot find
// ProfileUnknown rather than ProfileNone, since the record cannot be trusted.
func parseRecord(v string) (map[string]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	out := make(map[string]string, strings.Count(v, ",")+1)
	var bad []string
	for _, e := range strings.Split(v, ",") {
		c, p, ok := strings.Cut(strings.TrimSpace(e), "=")
		c, p = strings.TrimSpace(c), strings.TrimSpace(p)
		if !ok || c == "" || p == "" || strings.ContainsAny(p, " =") {
			bad = append(bad, e)
			continue
		}
		out[c] = p
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("entries %q are not container=profile", bad)
	}
	return out, nil
}

// profileOf returns the profile label for container c.
func profileOf(record map[string]string, recordBad bool, c string) string {
	if p, ok := record[c]; ok {
		return p
	}
	if recordBad {
		return ProfileUnknown
	}
	return ProfileNone
}
