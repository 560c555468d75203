package mutate

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// selectContainer resolves one container's profile and settings. Precedence, first match wins:
// lastcall.dev/profile.<container>, lastcall.dev/profile, auto-detection, the namespace's
// lastcall.dev/default-profile, the cluster default. A bad value at any level is reported and skipped, so
// the next level decides.
func (e *Engine) selectContainer(pod *corev1.Pod, c *corev1.Container, sidecar bool, ps *podSettings, nsDefault *profiles.Profile, catalog *profiles.Catalog, res *Result) (plan, bool) {
	res.Containers = append(res.Containers, Decision{Container: c.Name, Sidecar: sidecar})
	d := &res.Containers[len(res.Containers)-1]
	if strings.ContainsAny(c.Name, ",=") {
		d.Skip = &Skip{SkipInvalidName, fmt.Sprintf("container name %q is not a DNS-1123 label (the API server refuses it) and cannot be recorded in %s", c.Name, AnnotationInjected)}
		return plan{}, false
	}
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
	original, _ := unwrapCommand(c.Command)
	// The server's own command-line setting bounds its wait better than the profile's default; an annotation
	// still beats both.
	if t, src, ok := prof.TimeoutFromCommand(original, c.Args); ok {
		p.timeout, d.DrainTimeoutSource = t, src
	}
	var src string
	p.delay, src = resolve(ps, c.Name, res, func(s *settings) setting { return s.drainDelay }, p.delay, parseDelay, "drain delay", "")
	d.DrainDelaySource = src
	p.timeout, src = resolve(ps, c.Name, res, func(s *settings) setting { return s.drainTimeout }, p.timeout, parseTimeout, "drain timeout", d.DrainTimeoutSource)
	d.DrainTimeoutSource = src
	p.signal, d.StopSignalSource = e.resolveSignal(c, ps, prof, res)
	p.supervise, _ = resolve(ps, c.Name, res, func(s *settings) setting { return s.supervise }, p.supervise, parseBool, "supervision setting", "")
	if t, wrapper, ok := prof.WrapperTarget(c.Image, original, c.Args); ok {
		p.target = t
		p.d.Target = t
		p.d.TargetWhy = wrapper + " is a shell script that runs " + t + " without exec: PID 1 is sh, which ignores " + string(p.signal) + ", so the signal goes to " + t + " by name"
	}
	d.DrainDelay, d.StopSignal, d.DrainTimeout = dur(p.delay), p.signal, dur(p.timeout)
	return p, true
}

// resolveSignal picks the stop signal: a lastcall.dev/stop-signal annotation, else the container's own
// lifecycle.stopSignal (the user's stop-signal override, written in Kubernetes' own field), else the profile's.
// A container's stopSignal that an annotation or the profile contradicts is named in a warning. A stopSignal
// equal to what lastcall resolves without it may be one lastcall wrote on an earlier pass; either way the
// outcome is the same, so it is not reported as an override.
func (e *Engine) resolveSignal(c *corev1.Container, ps *podSettings, prof *profiles.Profile, res *Result) (profiles.Signal, string) {
	sig, src := resolve(ps, c.Name, res, func(s *settings) setting { return s.stopSignal }, prof.StopSignal, parseSig, "signal", "")
	if c.Lifecycle == nil || c.Lifecycle.StopSignal == nil {
		return sig, src
	}
	field := string(*c.Lifecycle.StopSignal)
	user, err := profiles.ParseSignal(field)
	switch {
	case err != nil:
		// A signal no server stops gracefully on (SIGKILL, SIGSTOP): the kubelet will still send it if the
		// cluster keeps the field; lastcall signals with its own choice first.
		res.Warnings = append(res.Warnings, fmt.Sprintf("lastcall: container %s: lifecycle.stopSignal %s is not a graceful signal lastcall knows (%v); lastcall uses %s", c.Name, field, err, sig))
		return sig, src
	case user == sig:
		return sig, src
	case src != "":
		res.Warnings = append(res.Warnings, fmt.Sprintf("lastcall: container %s: lifecycle.stopSignal %s conflicts with %s=%s; using %s", c.Name, user, src, sig, sig))
		return sig, src
	default:
		res.Warnings = append(res.Warnings, fmt.Sprintf("lastcall: container %s: lifecycle.stopSignal %s differs from the %s profile's %s; using the container's %s (set %s.%s to choose)", c.Name, user, prof.Name, prof.StopSignal, user, AnnotationStopSignal, c.Name))
		return user, "the container's lifecycle.stopSignal"
	}
}

func parseSig(v string) (profiles.Signal, error) {
	s, err := profiles.ParseSignal(v)
	if err != nil {
		return "", err
	}
	return s, nil
}

// resolve applies an override: the container-specific value, else the pod-wide one, else the profile's (or
// what the caller derived, named by fromSrc). It returns the value and where it came from: "" for the
// profile, fromSrc, or "annotation <key>". Each bad value is reported with the value that was used instead.
func resolve[T any](ps *podSettings, container string, res *Result, pick func(*settings) setting, fromProfile T, parse func(string) (T, error), what, fromSrc string) (T, string) {
	specific, podWide := ps.forContainer(container, pick)
	var bad []struct {
		s   setting
		err error
	}
	val, src, by := fromProfile, fromSrc, "the profile's"
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
		val, src, by = v, "annotation "+s.key, s.key+"'s"
		break
	}
	for _, b := range bad {
		used := by + " " + what + " " + formatValue(val)
		if src == fromSrc && fromSrc != "" {
			used = "the " + what + " " + formatValue(val) + " from " + fromSrc
		}
		res.Problems = append(res.Problems, Problem{Key: b.s.key, Value: b.s.value, Reason: b.err.Error(), Fallback: "container " + container + " uses " + used})
	}
	return val, src
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
