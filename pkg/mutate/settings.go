package mutate

import (
	"fmt"
	"strings"
	"time"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// setting is one annotation value, remembered with its key for messages.
type setting struct {
	key, value string
}

func (s setting) set() bool { return s.key != "" }

// settings are the lastcall annotations of one scope (the pod, or one container).
type settings struct {
	profile, drainDelay, stopSignal, drainTimeout, supervise setting
}

// podSettings are a pod's lastcall annotations, split into pod-wide and per-container.
type podSettings struct {
	pod        settings
	containers map[string]*settings
}

// parseAnnotations reads every lastcall.dev/ annotation once. Unknown keys and container suffixes that name no
// container are reported: a typo like "lastcall.dev/drain-dealy" must not silently do nothing.
func parseAnnotations(annotations map[string]string, hasContainer func(string) bool) (podSettings, []Problem) {
	var ps podSettings
	var problems []Problem
	for k, v := range annotations {
		if !strings.HasPrefix(k, Prefix) {
			continue
		}
		name := k[len(Prefix):]
		container := ""
		if i := strings.IndexByte(name, '.'); i >= 0 {
			name, container = name[:i], name[i+1:]
			if container == "" {
				// "lastcall.dev/profile." names no container; taking it as pod-wide would let map order decide
				// between it and "lastcall.dev/profile".
				problems = append(problems, Problem{Key: k, Value: v, Reason: "the key names no container after the dot", Fallback: "ignored"})
				continue
			}
		}
		var target *settings
		if container == "" {
			target = &ps.pod
		} else {
			if !hasContainer(container) {
				problems = append(problems, Problem{Key: k, Value: v, Reason: fmt.Sprintf("the pod has no container named %q", container), Fallback: "ignored"})
				continue
			}
			if ps.containers == nil {
				ps.containers = make(map[string]*settings, 2)
			}
			target = ps.containers[container]
			if target == nil {
				target = &settings{}
				ps.containers[container] = target
			}
		}
		s := setting{key: k, value: v}
		switch {
		case name == "profile":
			target.profile = s
		case name == "drain-delay":
			target.drainDelay = s
		case name == "stop-signal":
			target.stopSignal = s
		case name == "drain-timeout":
			target.drainTimeout = s
		case name == "supervise":
			target.supervise = s
		case container == "" && k == AnnotationInject:
			if _, known := InjectAnnotationValue(v); !known {
				problems = append(problems, Problem{Key: k, Value: v, Reason: "not a selection value (false, no, off, disabled or 0 opt the pod out; true, yes, on, enabled or 1 do nothing)", Fallback: "the pod is not opted out"})
			}
		case container == "" && (k == AnnotationInjected || k == AnnotationVersion):
		default:
			problems = append(problems, Problem{Key: k, Value: v, Reason: "unknown lastcall annotation (known: inject, profile, drain-delay, stop-signal, drain-timeout, supervise)", Fallback: "ignored"})
		}
	}
	return ps, problems
}

// forContainer returns the container-specific setting if set, else the pod-wide one.
func (ps *podSettings) forContainer(name string, pick func(*settings) setting) (specific, podWide setting) {
	if c := ps.containers[name]; c != nil {
		specific = pick(c)
	}
	return specific, pick(&ps.pod)
}

// reportUnused reports every bad value that no container's resolution reported: the settings of skipped
// containers, and every setting when the whole pod is skipped. fallback says what happened instead, for a
// container-specific key ("" for a pod-wide one).
func (ps *podSettings) reportUnused(res *Result, catalog *profiles.Catalog, fallback func(container string) string) {
	check := func(container string, st *settings) {
		for _, s := range [...]setting{st.profile, st.drainDelay, st.stopSignal, st.drainTimeout, st.supervise} {
			if !s.set() || reported(res, s.key) {
				continue
			}
			if reason := validate(s, st, catalog); reason != "" {
				res.Problems = append(res.Problems, Problem{Key: s.key, Value: s.value, Reason: reason, Fallback: fallback(container)})
			}
		}
	}
	check("", &ps.pod)
	for name, st := range ps.containers {
		check(name, st)
	}
}

func reported(res *Result, key string) bool {
	for i := range res.Problems {
		if res.Problems[i].Key == key {
			return true
		}
	}
	return false
}

// validate returns why a setting's value is bad, or "".
func validate(s setting, st *settings, catalog *profiles.Catalog) string {
	var err error
	switch s.key {
	case st.profile.key:
		v := strings.TrimSpace(s.value)
		if _, ok := catalog.Get(v); ok || v == profiles.NameAuto || v == profiles.NameNone {
			return ""
		}
		return "unknown profile (known: " + joinNames(catalog) + ", auto, none)"
	case st.drainDelay.key:
		_, err = parseDelay(s.value)
	case st.drainTimeout.key:
		_, err = parseTimeout(s.value)
	case st.stopSignal.key:
		_, err = parseSig(s.value)
	case st.supervise.key:
		_, err = parseBool(s.value)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func parseDelay(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("not a duration (use Go syntax such as 5s or 1m30s)")
	}
	if d < 0 || d > profiles.MaxDrainDelay {
		return 0, fmt.Errorf("out of range (0s to %s)", profiles.MaxDrainDelay)
	}
	return d, nil
}

func parseTimeout(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("not a duration (use Go syntax such as 30s or 2m)")
	}
	if d < profiles.MinDrainTimeout || d > profiles.MaxDrainTimeout {
		return 0, fmt.Errorf("out of range (%s to %s)", profiles.MinDrainTimeout, profiles.MaxDrainTimeout)
	}
	return d, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "enabled", "yes":
		return true, nil
	case "false", "disabled", "no":
		return false, nil
	}
	return false, fmt.Errorf(`not a boolean (use "true" or "false")`)
}
