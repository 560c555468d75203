package mutate

import "strings"

// Every label and annotation key lastcall reads or writes. All share the prefix "lastcall.dev/". Keys with a
// ".<container>" form accept a container-name suffix that beats the pod-wide key for that container.
const (
	Prefix = "lastcall.dev/"

	// LabelInject selects. On a namespace, "enabled" opts it in (the chart's namespaceSelector), "observe" opts
	// it in for shutdown telemetry only (pods are labelled LabelManaged=observe and otherwise left as they are;
	// see observe.go) and "disabled" opts it out even in all-namespaces mode. On a pod, "disabled" opts it out
	// (the chart's objectSelector).
	LabelInject = Prefix + "inject"
	// AnnotationInject on a pod: "false" (or "disabled") opts the pod out; "true"/"enabled" are accepted no-ops.
	AnnotationInject = Prefix + "inject"

	// AnnotationProfile picks the profile: a profile name, "auto" (detect; the default) or "none" (off).
	// "lastcall.dev/profile.<container>" picks it for one container and may name a native sidecar or a mesh
	// proxy, which are otherwise skipped.
	AnnotationProfile = Prefix + "profile"
	// AnnotationDefaultProfile on a namespace: the profile for containers nothing else decides.
	AnnotationDefaultProfile = Prefix + "default-profile"

	// AnnotationDrainDelay overrides the profile's drain delay (Go duration: "5s", "1m30s"; 0s to 10m).
	AnnotationDrainDelay = Prefix + "drain-delay"
	// AnnotationStopSignal overrides the profile's graceful signal ("SIGQUIT" or "QUIT").
	AnnotationStopSignal = Prefix + "stop-signal"
	// AnnotationDrainTimeout overrides how long the server may take after the signal (1s to 1h).
	AnnotationDrainTimeout = Prefix + "drain-timeout"
	// AnnotationSupervise "true" runs a container's explicit command under `lastcall-shim run`, so a shell
	// entrypoint or a process-group signal can no longer lose the graceful signal; "false" turns it off.
	AnnotationSupervise = Prefix + "supervise"

	// AnnotationInjected is written by lastcall: one entry per app container and native sidecar it looked at,
	// in pod order, comma-separated:
	//
	//	web=nginx        lastcall rendered web's shutdown with the nginx profile (its hook and signal are lastcall's)
	//	php=php-fpm(kept) the container's own preStop hook was kept; only the grace period covers the profile
	//	istio-proxy=-    looked at and left alone (mesh proxy, native sidecar, profile none, ...)
	//
	// It is a record for humans and for the webhook configuration's matchConditions (the API server does not
	// call lastcall again for a pod whose containers are exactly the recorded ones). Ownership of a hook is
	// decided from the pod's structure first: the shim's exec hook is lastcall's wherever it is; a native
	// preStop sleep is lastcall's only if this record names the container without "(kept)". Without the record
	// (it may not fit the API server's annotation limit) a native sleep counts as the user's and is kept as is,
	// which leaves the pod unchanged, so idempotency holds either way.
	AnnotationInjected = Prefix + "injected"
	// AnnotationVersion is written by lastcall: the version that injected the pod.
	AnnotationVersion = Prefix + "version"
	// LabelManaged is written by lastcall on every pod it handled: "inject" when it rendered a shutdown,
	// "observe" in an observe-mode namespace (nothing changed but this label). lastcall's shutdown observer
	// watches only pods with this label, selected by the API server.
	LabelManaged = Prefix + "managed"
)

// Values of LabelManaged (and the namespace's LabelInject value that turns observe mode on).
const (
	ManagedInject  = "inject"
	ManagedObserve = "observe"
)

// Kubernetes-owned keys the engine reads.
const (
	annotationMirror = "kubernetes.io/config.mirror"
)

// Names of what lastcall adds to a pod.
const (
	ShimContainerName = "lastcall-shim"
	ShimVolumeName    = "lastcall-bin"
	// ShimDir is where the shim binary is mounted in app containers (read-only).
	ShimDir = "/lastcall/bin"
	// ShimPath is the shim binary as app containers see it.
	ShimPath = ShimDir + "/lastcall-shim"
	// ShimImagePath is the shim binary inside the shim image.
	ShimImagePath = "/usr/local/bin/lastcall-shim"
	// CheckContainerPrefix names the per-container check init containers: "lastcall-check-<container>",
	// shortened with a hash of the container name when that exceeds 63 characters.
	CheckContainerPrefix = "lastcall-check-"
	// CheckForEnv is set in each check init container to the name of the container it checks: a check is found
	// again by the container it serves, never by its own name (names are truncated, and a user may own one).
	CheckForEnv = "LASTCALL_CHECK_FOR"
)

// Limits the API server enforces on what lastcall adds (k8s.io/apimachinery validation).
const (
	// MaxAnnotationsSize is the total size of a pod's annotations, counted as the API server does: the sum of
	// len(key)+len(value) over all of them.
	MaxAnnotationsSize = 256 * 1024
	// MaxNameLength is the longest container or volume name (a DNS label).
	MaxNameLength = 63
)

// Selection, written once. The webhook configuration (chart and config/webhook) filters with selectors and
// matchConditions so the API server does not call lastcall for pods it would skip; podSkip applies the same
// table to whatever reaches the engine (the CLI, a webhook configuration edited by hand). Test:
// test/chart TestSelectionTruthTable runs every row through the real API server and the engine.
//
//	where              key / field                  value                                    outcome
//	namespace label    lastcall.dev/inject          enabled                                  opted in (namespaceSelector, mode optIn)
//	namespace label    lastcall.dev/inject          observe                                  called (namespaceSelector, mode optIn); only labelled
//	                                                                                         lastcall.dev/managed=observe (engine, observe.go)
//	namespace label    lastcall.dev/inject          disabled                                 opted out (namespaceSelector in both modes; engine)
//	namespace label    lastcall.dev/inject          absent or other                          optIn mode: not called; all mode: called
//	namespace          kube-system, kube-public,    -                                        never called (namespaceSelector)
//	                   kube-node-lease, release ns
//	pod label          lastcall.dev/inject          disabled (exact: selectors cannot fold   opted out (objectSelector; engine)
//	                                                case)
//	pod label          lastcall.dev/inject          any other value                          no effect
//	pod annotation     lastcall.dev/inject          false, no, off, disabled, 0 (ASCII case  opted out (matchCondition not-opted-out; engine)
//	                                                ignored, surrounding spaces ignored)
//	pod annotation     lastcall.dev/inject          true, yes, on, enabled, 1 (same folding)  no effect
//	pod annotation     lastcall.dev/inject          anything else                            no effect; warning (strict mode: denied)
//	pod annotation     kubernetes.io/config.mirror  present                                  skipped (matchCondition not-mirror-pod; engine)
//	spec.os.name       -                            windows                                  skipped (matchCondition not-windows; engine)
//	pod annotation     lastcall.dev/injected        names exactly the pod's containers       not called again (matchCondition not-already-handled);
//	                                                and native sidecars                      the engine, if called, changes nothing
var (
	optOutValues = []string{"false", "no", "off", "disabled", "0"}
	optInValues  = []string{"true", "yes", "on", "enabled", "1"}
)

// InjectOptOutValues and InjectOptInValues are the folded lastcall.dev/inject values of the table above, for
// the CEL that must agree with InjectAnnotationValue (matchConditions, policy mode).
func InjectOptOutValues() []string { return append([]string(nil), optOutValues...) }

// InjectOptInValues: see InjectOptOutValues.
func InjectOptInValues() []string { return append([]string(nil), optInValues...) }

// InjectAnnotationValue classifies a lastcall.dev/inject annotation value by the table above: optOut is true
// for an opt-out value; known is false for a value that is neither (a warning names it).
func InjectAnnotationValue(v string) (optOut, known bool) {
	f := asciiLower(strings.TrimSpace(v))
	for _, o := range optOutValues {
		if f == o {
			return true, true
		}
	}
	for _, o := range optInValues {
		if f == o {
			return false, true
		}
	}
	return false, false
}

// asciiLower folds ASCII letters only, as CEL's lowerAscii does, so the engine and the matchCondition agree
// on every byte string.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
