package mutate

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// graceMargin is added to the longest shutdown so the kubelet's SIGKILL never races a server that exits on
// time: the kubelet's clock starts before the hook runs and the hook needs a moment to notice the exit.
const graceMargin = 2 * time.Second

// proxyOrderDelay is how much later an upstream is signalled than a proxy in the same pod.
const proxyOrderDelay = time.Second

// markKept finds the containers whose own preStop hook is kept. A kept native sleep is the delay that will
// really happen, so ordering and the grace period use it.
func (e *Engine) markKept(pod *corev1.Pod, plans []plan) {
	for i := range plans {
		p := &plans[i]
		if p.c.Lifecycle == nil || p.c.Lifecycle.PreStop == nil || isOurHook(pod, p.c, p.c.Lifecycle.PreStop) {
			continue
		}
		p.userHook = true
		if e.policy.ExistingPreStop != ExistingPreStopKeep {
			continue
		}
		p.kept = true
		if h := p.c.Lifecycle.PreStop; h.Sleep != nil && h.Exec == nil && h.HTTPGet == nil && h.TCPSocket == nil && h.Sleep.Seconds >= 0 {
			p.delay = time.Duration(min(h.Sleep.Seconds, int64(profiles.MaxDrainDelay/time.Second))) * time.Second
			p.d.DrainDelay, p.d.DrainDelaySource = dur(p.delay), "the container's own preStop sleep"
		}
	}
}

// order delays upstreams that sit next to a proxy: an upstream's delay is at least the latest proxy delay
// (after every per-container override) + 1s, so a request a proxy accepted in its last moment still finds the
// upstream listening, whatever the overrides say. Native sidecars are not ordered: they outlive the app
// containers by design.
func (e *Engine) order(plans []plan) {
	proxy, latest := "", time.Duration(-1)
	for i := range plans {
		if p := &plans[i]; p.profile.Role == profiles.RoleProxy && !p.d.Sidecar && p.delay > latest {
			proxy, latest = p.c.Name, p.delay
		}
	}
	if proxy == "" {
		return
	}
	for i := range plans {
		p := &plans[i]
		if p.profile.Role != profiles.RoleUpstream || p.d.Sidecar || p.kept {
			continue
		}
		p.d.OrderedAfter = proxy
		if min := latest + proxyOrderDelay; p.delay < min {
			p.d.OwnDelay = dur(p.delay)
			p.delay = min
			p.d.DrainDelay = dur(p.delay)
		}
	}
}

// grace sets terminationGracePeriodSeconds = max(current, max(delay+timeout)+2s), capped by the policy,
// never lowering what the user set.
func (e *Engine) grace(pod *corev1.Pod, plans []plan, res *Result) *Grace {
	var longest time.Duration
	for i := range plans {
		if g := plans[i].delay + plans[i].timeout; g > longest {
			longest = g
		}
	}
	g := &Grace{Needed: ceilSeconds(longest + graceMargin)}
	current := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		v := *pod.Spec.TerminationGracePeriodSeconds
		g.Before = &v
		current = v
	}
	// A previous pass may have raised the grace period; what it found is not known, so reinvocation recomputes
	// from what is there, which gives the same answer (max is idempotent).
	target := max(current, g.Needed)
	limit := ceilSeconds(e.policy.MaxGracePeriod.Duration)
	if target > limit && current <= limit {
		target = limit
		g.Capped = true
		res.Warnings = append(res.Warnings, fmt.Sprintf("lastcall: terminationGracePeriodSeconds capped at %d (policy maxGracePeriod %s); the longest shutdown needs %d", limit, e.policy.MaxGracePeriod.Duration, g.Needed))
	}
	if g.Before != nil && *g.Before < target && *g.Before == 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("lastcall: terminationGracePeriodSeconds raised from 0 to %d so the shutdown can run; set lastcall.dev/inject: \"false\" to keep 0", target))
	}
	g.After = target
	pod.Spec.TerminationGracePeriodSeconds = &g.After
	return g
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// shimState tracks the shared shim pieces while rendering.
type shimState struct {
	needed bool
	volume string
}

// render writes each container's hook, signal or supervision, then the shim and check init containers.
func (e *Engine) render(pod *corev1.Pod, plans []plan, res *Result) {
	st := &shimState{volume: e.shimVolumeName(pod)}
	grace := time.Duration(res.Grace.After) * time.Second
	var checks []plan
	fit(plans, grace, res)
	for i := range plans {
		p := &plans[i]
		if hasForeignMount(p.c, st.volume) {
			p.d.Skip = &Skip{SkipShimPathInUse, "container " + p.c.Name + " already mounts something else at " + ShimDir}
			res.Warnings = append(res.Warnings, "lastcall: "+p.d.Skip.Message+"; left unchanged")
			continue
		}
		e.renderContainer(pod, p, st, res)
		if e.policy.CheckMode != CheckModeOff && len(p.profile.Checks) > 0 {
			checks = append(checks, *p)
			st.needed = true
		}
	}
	// Mount before ensureShim and ensureCheck change pod.Spec.InitContainers: a native sidecar's plan points
	// into that slice, and a pointer into a replaced backing array would mount into a copy nobody keeps.
	for i := range plans {
		if plans[i].d.Skip == nil && (st.needed && usesShim(plans[i].c)) {
			ensureMount(plans[i].c, st.volume)
		}
	}
	if st.needed {
		e.ensureShim(pod, st)
		res.ShimInjected = true
	}
	for i := range checks {
		e.ensureCheck(pod, &checks[i], st)
	}
}

// fit keeps every delay below the grace period: a capped grace period can leave less time than the delay, and
// the API requires preStop.sleep.seconds < terminationGracePeriodSeconds (the sleep is the delay rounded up).
// A proxy with an ordered upstream gets one second less, so the upstream still follows it.
func fit(plans []plan, grace time.Duration, res *Result) {
	ordered := false
	for i := range plans {
		ordered = ordered || plans[i].d.OrderedAfter != ""
	}
	limit := func(p *plan) time.Duration {
		l := grace - time.Second
		if ordered && p.profile.Role == profiles.RoleProxy && !p.d.Sidecar {
			l -= proxyOrderDelay
		}
		return max(l, 0)
	}
	clip := func(p *plan, nd time.Duration) {
		res.Warnings = append(res.Warnings, fmt.Sprintf("lastcall: container %s: drain delay %s does not fit the grace period %s; using %s", p.c.Name, p.delay, grace, nd))
		p.delay, p.d.DrainDelay = nd, dur(nd)
	}
	latest := time.Duration(-1)
	for i := range plans {
		p := &plans[i]
		if l := limit(p); !p.kept && ceilSeconds(p.delay) > int64(l/time.Second) {
			clip(p, l)
		}
		if p.profile.Role == profiles.RoleProxy && !p.d.Sidecar {
			latest = max(latest, p.delay)
		}
	}
	for i := range plans {
		// The API limit beats the ordering rule: only a kept proxy hook longer than a capped grace period
		// can leave no room for both.
		if p := &plans[i]; p.d.OrderedAfter != "" && p.delay < latest+proxyOrderDelay {
			nd := min(latest+proxyOrderDelay, max(grace-time.Second, 0))
			p.delay, p.d.DrainDelay = nd, dur(nd)
		}
	}
}

// renderContainer chooses the cheapest rendering that is graceful for this container, in this order:
// the kubelet sends the right signal itself (SIGTERM servers; stopSignal on clusters that have it; the
// supervisor), else the shim's exec hook that signals and waits. It writes only lastcall's own hook and
// stopSignal: a hook of the user's is kept (policy keep) and a user's stopSignal is left where it is.
func (e *Engine) renderContainer(pod *corev1.Pod, p *plan, st *shimState, res *Result) {
	c := p.c
	if p.kept {
		p.d.Rendering = RenderKeptExisting
		p.d.Why = "the container has its own preStop hook and the policy says existingPreStop: keep"
		res.Warnings = append(res.Warnings, fmt.Sprintf("lastcall: container %s already has a preStop hook; kept it (policy existingPreStop: keep); its grace period still covers the %s profile", c.Name, p.profile.Name))
		return
	}
	if p.userHook {
		res.Warnings = append(res.Warnings, fmt.Sprintf("lastcall: container %s: replaced its preStop hook (policy existingPreStop: replace)", c.Name))
	}

	original, wrapped := unwrapCommand(c.Command)
	supervise := p.supervise && len(original) > 0 && p.target == ""
	if p.supervise && len(original) == 0 && !wrapped {
		res.Warnings = append(res.Warnings, fmt.Sprintf("lastcall: container %s: supervision needs an explicit command (the image's entrypoint is unknown to lastcall); rendering without it", c.Name))
	}
	var hook *corev1.LifecycleHandler
	var stopSignal *corev1.Signal
	switch {
	case p.target != "":
		// PID 1 is a launcher that ignores the signal: neither the kubelet (stopSignal, SIGTERM) nor a
		// supervisor (which signals its child, the launcher) reaches the server. Only the shim can, by name.
		st.needed = true
		hook = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{
			ShimPath, "prestop", "--delay", p.delay.String(), "--signal", string(p.signal), "--timeout", p.timeout.String(), "--target", "name:" + p.target,
		}}}
		p.d.Rendering, p.d.Why = RenderShimExec, p.d.TargetWhy+"; the shim signals after the delay and waits for the exit"
	case p.signal == profiles.SIGTERM && !supervise:
		hook = e.sleepHook(p.delay, st)
		p.d.Rendering, p.d.Why = RenderNativeSleep, "the server drains on SIGTERM, which the kubelet sends after the delay"
		if hook == nil {
			p.d.Rendering, p.d.Why = RenderGraceOnly, "no drain delay and SIGTERM is graceful: only the grace period is needed"
		} else if hook.Exec != nil {
			p.d.Rendering, p.d.Why = RenderShimSleep, "the server drains on SIGTERM; this cluster has no native preStop sleep, so the shim sleeps"
		}
	case p.signal != profiles.SIGTERM && e.caps.StopSignal && (c.Lifecycle == nil || c.Lifecycle.StopSignal == nil ||
		string(*c.Lifecycle.StopSignal) == string(p.signal) || strings.HasPrefix(p.d.StopSignalSource, "annotation ")):
		// The user's own stopSignal is replaced only by the user's own annotation.
		sig := corev1.Signal(p.signal)
		stopSignal = &sig
		hook = e.sleepHook(p.delay, st)
		p.d.Rendering, p.d.Why = RenderStopSignal, "the cluster has ContainerStopSignals: the kubelet itself sends "+string(p.signal)+" after the delay"
	case supervise:
		hook = e.sleepHook(p.delay, st)
		p.d.Rendering, p.d.Why = RenderSupervise, "the command is explicit and supervision is on: lastcall-shim run is PID 1 and turns the kubelet's SIGTERM into "+string(p.signal)
	default:
		st.needed = true
		hook = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{
			ShimPath, "prestop", "--delay", p.delay.String(), "--signal", string(p.signal), "--timeout", p.timeout.String(),
		}}}
		p.d.Rendering, p.d.Why = RenderShimExec, "the server needs "+string(p.signal)+" and the cluster cannot send it: the shim signals after the delay and waits for the exit (the kubelet then reports the hook as failed with exit 137: expected)"
	}

	if supervise {
		st.needed = true
		c.Command = supervisedCommand(original, p.signal)
	} else if wrapped {
		c.Command = original
	}
	if hook == nil && stopSignal == nil {
		// Nothing to render; remove only a hook of lastcall's own from an earlier pass.
		if c.Lifecycle != nil {
			c.Lifecycle.PreStop = nil
			if c.Lifecycle.PostStart == nil && c.Lifecycle.StopSignal == nil {
				c.Lifecycle = nil
			}
		}
		return
	}
	if c.Lifecycle == nil {
		c.Lifecycle = &corev1.Lifecycle{}
	}
	c.Lifecycle.PreStop = hook
	if stopSignal != nil {
		c.Lifecycle.StopSignal = stopSignal
	}
	if c.Lifecycle.StopSignal != nil && pod.Spec.OS == nil {
		// The API requires spec.os.name with lifecycle.stopSignal.
		pod.Spec.OS = &corev1.PodOS{Name: corev1.Linux}
	}
}

// sleepHook is the delay before the kubelet's stop signal: native sleep when the cluster has it, else the shim.
func (e *Engine) sleepHook(d time.Duration, st *shimState) *corev1.LifecycleHandler {
	if d <= 0 {
		return nil
	}
	if e.caps.PreStopSleep {
		return &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: ceilSeconds(d)}}
	}
	st.needed = true
	return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{ShimPath, "prestop", "--delay", d.String(), "--signal", "none"}}}
}

// isOurHook tells lastcall's hooks from the user's. The shim's prestop exec is lastcall's by its structure
// alone. A native sleep carries nothing of lastcall's, so it is lastcall's only when the record says lastcall
// rendered this container (not "kept"): a user's sleep is recorded as kept on the first pass and so is kept
// on every later one, whatever its value. Without the record a sleep counts as the user's, which keeps the pod
// as it is.
func isOurHook(pod *corev1.Pod, c *corev1.Container, h *corev1.LifecycleHandler) bool {
	if h.Exec != nil && len(h.Exec.Command) > 1 && h.Exec.Command[0] == ShimPath && h.Exec.Command[1] == "prestop" {
		return true
	}
	if h.Sleep != nil && h.Exec == nil && h.HTTPGet == nil && h.TCPSocket == nil {
		v, ok := recordEntry(pod.Annotations[AnnotationInjected], c.Name)
		return ok && v != recordSkipped && !strings.HasSuffix(v, recordKept)
	}
	return false
}

// supervisedCommand wraps a command in `lastcall-shim run`. The kubelet appends args after the command, so
// they reach the child unchanged.
func supervisedCommand(original []string, sig profiles.Signal) []string {
	cmd := make([]string, 0, len(original)+5)
	cmd = append(cmd, ShimPath, "run")
	if sig != profiles.SIGTERM {
		cmd = append(cmd, "--rewrite", "TERM="+sig.Short())
	}
	cmd = append(cmd, "--")
	return append(cmd, original...)
}

// unwrapCommand returns the user's command from a supervised one.
func unwrapCommand(cmd []string) (original []string, wrapped bool) {
	if len(cmd) < 2 || cmd[0] != ShimPath || cmd[1] != "run" {
		return cmd, false
	}
	for i := 2; i < len(cmd); i++ {
		if cmd[i] == "--" {
			return cmd[i+1:], true
		}
	}
	return cmd, false
}

func usesShim(c *corev1.Container) bool {
	if len(c.Command) > 0 && c.Command[0] == ShimPath {
		return true
	}
	return c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil &&
		len(c.Lifecycle.PreStop.Exec.Command) > 0 && c.Lifecycle.PreStop.Exec.Command[0] == ShimPath
}
