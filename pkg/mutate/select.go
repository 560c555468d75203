package mutate

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// selectContainer resolves one container's profile and settings. Precedence, first match wins:
// lastcall.dev/profile.<container>, lastcall.dev/profile, auto-detection, the namespace's
// lastcall.dev/default-profile, the cluster default. A bad value at any level is reported and skipped, so
// the next level decides.
func (e *Engine) selectContainer(c *corev1.Container, sidecar bool, ps *podSettings, nsDefault *profiles.Profile, catalog *profiles.Catalog, res *Result) (plan, bool) {
	res.Containers = append(res.Containers, Decision{Container: c.Name, Sidecar: sidecar})
	d := &res.Containers[len(res.Containers)-1]
	specific, podWide := ps.forContainer(c.Name, func(s *settings) setting { return s.profile })

	// Native sidecars and mesh proxies are someone else's business unless a container-specific annotation
	// names them: a pod-wide profile was written for the app, not for an injected proxy.
	if !specific.set() || specific.value == profiles.NameAuto {
		if sidecar {
			d.Skip = &Skip{SkipNativeSidecar, "native sidecar (restartPolicy Always): set " + AnnotationProfile + "." + c.Name + " to include it"}
			return plan{}, false
		}
		if e.mesh[c.Name] {
			d.Skip = &Skip{SkipMeshProxy, "mesh proxy " + c.Name + " manages its own shutdown: set " + AnnotationProfile + "." + c.Name + " to include it"}
			return plan{}, false
		}
	}

	var bad []setting
	var prof *profiles.Profile
	for _, s := range [2]setting{specific, podWide} {
		if !s.set() {
			continue
		}
		v := strings.TrimSpace(s.value)
		if v == profiles.NameNone {
			d.Skip = &Skip{SkipProfileNone, s.key + `="none" switches lastcall off for this container`}
			return plan{}, false
		}
		if v == profiles.NameAuto {
			break
		}
		if p, ok := catalog.Get(v); ok {
			prof, d.ProfileSource = p, "annotation "+s.key
			break
		}
		bad = append(bad, s)
	}
	if prof == nil {
		if det := catalog.Detect(c.Image, c.Command, c.Args); det.Profile != nil {
			prof, d.ProfileSource = det.Profile, "detected: "+det.Rule
		}
	}
	if prof == nil && nsDefault != nil {
		prof, d.ProfileSource = nsDefault, "namespace annotation "+AnnotationDefaultProfile
	}
	if prof == nil {
		p, ok := catalog.Get(e.policy.DefaultProfile)
		if !ok {
			// The policy names a ShutdownProfile that is gone; http is always there.
			p, _ = catalog.Get(profiles.NameHTTP)
			res.Warnings = append(res.Warnings, "lastcall: the cluster default profile "+e.policy.DefaultProfile+" does not exist; using http")
		}
		prof, d.ProfileSource = p, "cluster default"
	}
	for _, s := range bad {
		res.Problems = append(res.Problems, Problem{Key: s.key, Value: s.value, Reason: "unknown profile (known: " + joinNames(catalog) + ", auto, none)", Fallback: "container " + d.Container + " uses " + prof.Name + " (" + d.ProfileSource + ")"})
	}
	d.Profile = prof.Name

	p := plan{c: c, d: d, profile: prof, delay: prof.DrainDelay, signal: prof.StopSignal, timeout: prof.DrainTimeout,
		supervise: prof.Supervise || e.policy.Supervise}
	p.delay = resolve(ps, c.Name, res, func(s *settings) setting { return s.drainDelay }, p.delay, parseDelay, "drain delay")
	p.timeout = resolve(ps, c.Name, res, func(s *settings) setting { return s.drainTimeout }, p.timeout, parseTimeout, "drain timeout")
	p.signal = resolve(ps, c.Name, res, func(s *settings) setting { return s.stopSignal }, p.signal, parseSig, "signal")
	p.supervise = resolve(ps, c.Name, res, func(s *settings) setting { return s.supervise }, p.supervise, parseBool, "supervision setting")
	d.DrainDelay, d.StopSignal, d.DrainTimeout = dur(p.delay), p.signal, dur(p.timeout)
	return p, true
}

func parseSig(v string) (profiles.Signal, error) {
	s, err := profiles.ParseSignal(v)
	if err != nil {
		return "", err
	}
	return s, nil
}

// resolve applies an override: the container-specific value, else the pod-wide one, else the profile's.
// Each bad value is reported with the value that was used instead.
func resolve[T any](ps *podSettings, container string, res *Result, pick func(*settings) setting, fromProfile T, parse func(string) (T, error), what string) T {
	specific, podWide := ps.forContainer(container, pick)
	var bad []struct {
		s   setting
		err error
	}
	val, src := fromProfile, "the profile's"
	for _, s := range [2]setting{specific, podWide} {
		if !s.set() {
			continue
		}
		v, err := parse(s.value)
		if err != nil {
			bad = append(bad, struct {
				s   setting
				err error
			}{s, err})
			continue
		}
		val, src = v, s.key+"'s"
		break
	}
	for _, b := range bad {
		res.Problems = append(res.Problems, Problem{Key: b.s.key, Value: b.s.value, Reason: b.err.Error(), Fallback: "container " + container + " uses " + src + " " + what + " " + formatValue(val)})
	}
	return val
}

func formatValue(v any) string {
	switch x := v.(type) {
	case interface{ String() string }:
		return x.String()
	case profiles.Signal:
		return string(x)
	case bool:
		if x {
			return "true"
		}
		return "false"
	}
	return ""
}
