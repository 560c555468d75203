package mutate

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// Policy is the cluster-wide configuration, read from the file the chart renders (policy.yaml).
type Policy struct {
	// DefaultProfile is used when neither annotations, detection nor the namespace decide.
	DefaultProfile string `json:"defaultProfile,omitempty"`
	// Strict denies pods with bad lastcall annotations instead of admitting them with a warning.
	Strict bool `json:"strict,omitempty"`
	// MaxGracePeriod caps the terminationGracePeriodSeconds lastcall sets (never lowers what the user set).
	MaxGracePeriod metav1.Duration `json:"maxGracePeriod,omitempty"`
	// ExistingPreStop says what to do with a preStop hook the user wrote: keep (default) or replace.
	ExistingPreStop string `json:"existingPreStop,omitempty"`
	// CheckMode runs the profiles' preflight checks: off, warn (default) or enforce.
	CheckMode string `json:"checkMode,omitempty"`
	// Supervise wraps explicit commands in `lastcall-shim run` for every container.
	Supervise    bool             `json:"supervise,omitempty"`
	Shim         ShimPolicy       `json:"shim,omitempty"`
	Checks       CheckPolicy      `json:"checks,omitempty"`
	MeshProxies  []string         `json:"meshProxies,omitempty"`
	Capabilities CapabilityPolicy `json:"capabilities,omitempty"`
}

// ShimPolicy configures the init container that installs lastcall-shim.
type ShimPolicy struct {
	Image           string                      `json:"image,omitempty"`
	ImagePullPolicy corev1.PullPolicy           `json:"imagePullPolicy,omitempty"`
	Resources       corev1.ResourceRequirements `json:"resources,omitempty"`
}

// CheckPolicy configures the check init containers (they run the app's image, so they need more memory than
// the shim: php-fpm loads its extensions to print its configuration).
type CheckPolicy struct {
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// CapabilityPolicy states what the cluster supports. "auto" lets the webhook decide from the server version.
type CapabilityPolicy struct {
	// PreStopSleep: auto, true or false. lifecycle.preStop.sleep is GA in 1.34 (beta, on by default, in 1.30).
	PreStopSleep string `json:"preStopSleep,omitempty"`
	// StopSignal: the ContainerStopSignals feature gate is on (alpha in 1.33; off by default).
	StopSignal bool `json:"stopSignal,omitempty"`
}

// Policy values.
const (
	ExistingPreStopKeep    = "keep"
	ExistingPreStopReplace = "replace"
	CheckModeOff           = "off"
	CheckModeWarn          = "warn"
	CheckModeEnforce       = "enforce"
	Auto                   = "auto"
)

// DefaultShimImage is the shim image when the policy names none.
const DefaultShimImage = "ghcr.io/lastcall-dev/lastcall-shim:v0.1.0-dev"

// DefaultPolicy is what an empty policy file means.
func DefaultPolicy() Policy {
	p := Policy{}
	p.setDefaults()
	return p
}

func (p *Policy) setDefaults() {
	if p.DefaultProfile == "" {
		p.DefaultProfile = profiles.NameHTTP
	}
	if p.MaxGracePeriod.Duration == 0 {
		// 15m leaves room for celery's 10m drain plus the delay without a cap warning on every worker pod.
		p.MaxGracePeriod.Duration = 15 * time.Minute
	}
	if p.ExistingPreStop == "" {
		p.ExistingPreStop = ExistingPreStopKeep
	}
	if p.CheckMode == "" {
		p.CheckMode = CheckModeWarn
	}
	if p.Shim.Image == "" {
		p.Shim.Image = DefaultShimImage
	}
	if p.Shim.ImagePullPolicy == "" {
		p.Shim.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if p.Shim.Resources.Requests == nil && p.Shim.Resources.Limits == nil {
		p.Shim.Resources = resources("10m", "16Mi", "100m", "32Mi")
	}
	if p.Checks.Resources.Requests == nil && p.Checks.Resources.Limits == nil {
		p.Checks.Resources = resources("10m", "32Mi", "200m", "128Mi")
	}
	if p.MeshProxies == nil {
		p.MeshProxies = []string{"istio-proxy", "linkerd-proxy"}
	}
	if p.Capabilities.PreStopSleep == "" {
		p.Capabilities.PreStopSleep = Auto
	}
}

func resources(reqCPU, reqMem, limCPU, limMem string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(reqCPU), corev1.ResourceMemory: resource.MustParse(reqMem)},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(limCPU), corev1.ResourceMemory: resource.MustParse(limMem)},
	}
}

// ParsePolicy decodes a policy file strictly (an unknown key is an error: a typo must not silently fall back to
// a default), fills defaults and validates.
func ParsePolicy(data []byte) (Policy, error) {
	var p Policy
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return Policy{}, fmt.Errorf("policy: %w", err)
	}
	p.setDefaults()
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Validate reports every bad field of the policy, each by name.
func (p *Policy) Validate() error {
	var errs []error
	if p.MaxGracePeriod.Duration < 2*time.Second {
		errs = append(errs, fmt.Errorf("policy: maxGracePeriod %s: must be at least 2s", p.MaxGracePeriod.Duration))
	}
	switch p.ExistingPreStop {
	case ExistingPreStopKeep, ExistingPreStopReplace:
	default:
		errs = append(errs, fmt.Errorf("policy: existingPreStop %q: must be keep or replace", p.ExistingPreStop))
	}
	switch p.CheckMode {
	case CheckModeOff, CheckModeWarn, CheckModeEnforce:
	default:
		errs = append(errs, fmt.Errorf("policy: checkMode %q: must be off, warn or enforce", p.CheckMode))
	}
	switch p.Capabilities.PreStopSleep {
	case Auto, "true", "false":
	default:
		errs = append(errs, fmt.Errorf("policy: capabilities.preStopSleep %q: must be auto, true or false", p.Capabilities.PreStopSleep))
	}
	switch p.Shim.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("policy: shim.imagePullPolicy %q: must be Always, IfNotPresent or Never", p.Shim.ImagePullPolicy))
	}
	return errors.Join(errs...)
}

// Capabilities are what the engine may render, resolved from the policy and the server version.
type Capabilities struct {
	// PreStopSleep: the API server accepts lifecycle.preStop.sleep.
	PreStopSleep bool `json:"preStopSleep"`
	// StopSignal: the API server keeps lifecycle.stopSignal (ContainerStopSignals on).
	StopSignal bool `json:"stopSignal"`
}

// ResolveCapabilities decides the capabilities from the policy and the server's minor version (1.34 -> 34;
// 0 when unknown, which assumes a current server).
func ResolveCapabilities(p CapabilityPolicy, serverMinor int) Capabilities {
	c := Capabilities{StopSignal: p.StopSignal}
	switch p.PreStopSleep {
	case "true":
		c.PreStopSleep = true
	case "false":
		c.PreStopSleep = false
	default:
		// Beta and on by default since 1.30.
		c.PreStopSleep = serverMinor == 0 || serverMinor >= 30
	}
	return c
}
