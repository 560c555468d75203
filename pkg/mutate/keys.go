package mutate

// Every label and annotation key lastcall reads or writes. All share the prefix "lastcall.dev/". Keys with a
// ".<container>" form accept a container-name suffix that beats the pod-wide key for that container.
const (
	Prefix = "lastcall.dev/"

	// LabelInject selects. On a namespace, "enabled" opts it in (the chart's namespaceSelector) and "disabled"
	// opts it out even in all-namespaces mode. On a pod, "disabled" opts it out (the chart's objectSelector).
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

	// AnnotationInjected is written by lastcall: "container=profile,..." for every container it handled.
	// It is a record for humans and tools; prior injection is detected from the pod's structure.
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
	// CheckContainerPrefix names the per-container check init containers: "lastcall-check-<container>".
	CheckContainerPrefix = "lastcall-check-"
)
