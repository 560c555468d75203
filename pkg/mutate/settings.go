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
		case container == "" && (k == AnnotationInject || k == AnnotationInjected || k == AnnotationVersion):
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
