package mutate

import (
	"fmt"
	"strings"
	"time"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// GraceMargin and ProxyOrderDelay are the engine's two fixed numbers, exported so tools print them from here.
const (
	GraceMargin     = graceMargin
	ProxyOrderDelay = proxyOrderDelay
)

// Step is one moment of a container's shutdown, measured from the start of termination, with where its
// number came from.
type Step struct {
	At     time.Duration `json:"at"`
	What   string        `json:"what"`
	Source string        `json:"source,omitempty"`
}

// Timeline is what happens to the container from the start of termination, for the rendering the engine
// chose: who waits, who sends which signal when, when the drain timeout ends and when the kubelet kills. It is
// derived from the decision and the pod's grace period only, so explain prints the engine's own rules and
// never restates them. Nil for a skipped container.
func (d *Decision) Timeline(g *Grace) []Step {
	if d.Skip != nil || d.Rendering == "" || g == nil || d.DrainDelay == nil || d.DrainTimeout == nil {
		return nil
	}
	delay, timeout, sig, name := d.DrainDelay.Duration, d.DrainTimeout.Duration, string(d.StopSignal), d.Container
	delaySrc := or(d.DrainDelaySource, "the "+d.Profile+" profile")
	if d.OrderedAfter != "" {
		if d.OwnDelay != nil {
			delaySrc = fmt.Sprintf("ordering: %s more than %s, the latest proxy, so it stops taking requests first (its own delay was %s, from %s)",
				human(ProxyOrderDelay), d.OrderedAfter, human(d.OwnDelay.Duration), delaySrc)
		} else {
			delaySrc += fmt.Sprintf("; already at least %s more than %s, the latest proxy", human(ProxyOrderDelay), d.OrderedAfter)
		}
	}
	sigSrc := or(d.StopSignalSource, "the "+d.Profile+" profile")
	timeoutSrc := or(d.DrainTimeoutSource, "the "+d.Profile+" profile")
	graceSrc := fmt.Sprintf("terminationGracePeriodSeconds %d: the longest container's delay + timeout + %s margin needs %ds", g.After, human(GraceMargin), g.Needed)
	switch {
	case g.Capped:
		graceSrc += ", capped by the policy's maxGracePeriod"
	case g.After > g.Needed:
		graceSrc += "; the pod's own value is larger and kept"
	}
	var ev []Step
	sleeper := "preStop sleeps " + human(delay)
	if d.Rendering == RenderShimSleep || d.Rendering == RenderShimExec {
		sleeper = "preStop: lastcall-shim sleeps " + human(delay)
	}
	if d.OrderedAfter != "" {
		sleeper += fmt.Sprintf(" (%s more than %s, so %s stops taking requests first)", human(ProxyOrderDelay), d.OrderedAfter, d.OrderedAfter)
	}
	start := Step{At: 0, What: "termination starts; " + sleeper, Source: delaySrc}
	done := Step{At: delay + timeout, What: "drain timeout (" + human(timeout) + ") ends: " + name + " should have exited", Source: timeoutSrc}
	switch d.Rendering {
	case RenderNativeSleep, RenderShimSleep:
		if delay == 0 {
			ev = append(ev, Step{At: 0, What: "termination starts; kubelet sends SIGTERM", Source: sigSrc})
		} else {
			ev = append(ev, start, Step{At: delay, What: "kubelet sends SIGTERM", Source: sigSrc})
		}
		ev = append(ev, done)
	case RenderStopSignal:
		ev = append(ev, start, Step{At: delay, What: "kubelet sends " + sig + " (lifecycle.stopSignal)", Source: sigSrc}, done)
	case RenderSupervise:
		how := "forwards it to " + name
		if sig != string(profiles.SIGTERM) {
			how = "turns it into " + sig + " for " + name
		}
		ev = append(ev, start, Step{At: delay, What: "kubelet sends SIGTERM; lastcall-shim run (PID 1) " + how, Source: sigSrc}, done)
	case RenderShimExec:
		to := name
		if d.Target != "" {
			to = d.Target + " (by name: " + d.TargetWhy + ")"
		}
		ev = append(ev, start,
			Step{At: delay, What: "lastcall-shim sends " + sig + " to " + to + " and waits for it to exit (the kubelet reports the hook as failed, exit 137, when it does: expected)", Source: sigSrc},
			Step{At: delay + timeout, What: "drain timeout (" + human(timeout) + ") ends: " + name + " should have exited; if not, the hook returns and the kubelet sends SIGTERM", Source: timeoutSrc})
	case RenderGraceOnly:
		ev = append(ev, Step{At: 0, What: "termination starts; kubelet sends SIGTERM at once (no drain delay)", Source: sigSrc},
			Step{At: timeout, What: "drain timeout (" + human(timeout) + ") ends: " + name + " should have exited", Source: timeoutSrc})
	case RenderKeptExisting:
		what := "termination starts; the container's own preStop hook runs (kept), then the kubelet sends its stop signal"
		src := "policy existingPreStop: keep"
		if d.DrainDelaySource != "" {
			what = "termination starts; the container's own preStop sleep (" + human(delay) + ") runs (kept)"
			ev = append(ev, Step{At: 0, What: what, Source: src}, Step{At: delay, What: "kubelet sends the container's stop signal (SIGTERM unless its lifecycle.stopSignal says otherwise)", Source: "the container"}, done)
		} else {
			ev = append(ev, Step{At: 0, What: what, Source: src})
		}
	}
	return append(ev, Step{At: time.Duration(g.After) * time.Second, What: "grace period ends: kubelet sends SIGKILL if " + name + " is still running", Source: graceSrc})
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// human writes a duration as people do: "10m" and "1h", not "10m0s" and "1h0m0s". Go parses both.
func human(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Human is the duration format of the engine's sentences, for tools that print next to them.
func Human(d time.Duration) string { return human(d) }
