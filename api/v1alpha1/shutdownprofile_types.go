package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The Accepted condition says whether the webhook uses the profile. The webhook validates every
// ShutdownProfile again (glob syntax, the merged result of an override) and reports the outcome here, because
// the schema cannot see everything: a profile the schema admits may still be refused, and then the webhook
// keeps serving with the other profiles.
const (
	// ConditionAccepted is True when the webhook serves the profile, False (with a reason and a message naming
	// the field) when it left the profile out.
	ConditionAccepted = "Accepted"

	// ReasonValid: the profile is in use. ReasonOverridesBuiltin: in use, and it replaces fields of the
	// built-in profile of the same name. ReasonInvalid: left out; the message says why.
	ReasonValid            = "Valid"
	ReasonOverridesBuiltin = "OverridesBuiltin"
	ReasonInvalid          = "Invalid"
)

// ShutdownProfileSpec says how one kind of server stops gracefully. A ShutdownProfile named like a built-in
// profile (http, nginx, php-fpm, ...) overrides it field by field: unset fields keep the built-in values. A
// profile with a new name starts from nothing but a 30s drainTimeout, so it must set stopSignal.
//
// Durations are Go duration strings ("5s", "1m30s"). Every string and list is bounded so the CEL rules stay
// within the apiserver's cost budget.
type ShutdownProfileSpec struct {
	// Description is one line shown by `lastcall profiles` and in the docs.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Description string `json:"description,omitempty"`

	// DrainDelay is how long the container keeps serving after termination starts, so endpoints and load
	// balancers stop sending it new traffic before the stop signal. 0s to 10m.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$`
	// +kubebuilder:validation:XValidation:rule="self == '0' || !self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self) <= duration('10m')",message="drainDelay must be between 0s and 10m"
	DrainDelay *metav1.Duration `json:"drainDelay,omitempty"`

	// StopSignal is the signal that means "finish in-flight work, then exit" for this server, with or without
	// the SIG prefix. Required for a profile that does not override a built-in.
	// +optional
	// +kubebuilder:validation:Enum=SIGTERM;TERM;SIGQUIT;QUIT;SIGINT;INT;SIGUSR1;USR1;SIGUSR2;USR2;SIGWINCH;WINCH;SIGHUP;HUP
	StopSignal string `json:"stopSignal,omitempty"`

	// DrainTimeout is how long the server may take to finish after the stop signal. 1s to 1h.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('1h'))",message="drainTimeout must be between 1s and 1h"
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty"`

	// Checks names preflight checks run in an init container before the app starts (see the policy's
	// checkMode). Setting it replaces the built-in's checks; an empty list switches them off.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:Enum=php-fpm-process-control-timeout
	Checks []string `json:"checks,omitempty"`

	// Match holds the auto-detection rules. Setting it replaces the built-in's rules.
	// +optional
	Match *ProfileMatch `json:"match,omitempty"`

	// Role places the server in the request path, for the order in which containers of one pod are signalled:
	// an upstream (php-fpm, gunicorn, an app server) next to a proxy (nginx, haproxy, envoy) is signalled at
	// least 1s after the latest proxy, so a request the proxy accepted last still finds it listening. worker
	// (a queue consumer) and other (a database) are never reordered. Unset: the built-in's role for an
	// override, other for a new profile.
	// +optional
	// +kubebuilder:validation:Enum=proxy;upstream;worker;other
	Role string `json:"role,omitempty"`

	// Supervise asks for a container with an explicit command to run under `lastcall-shim run`, which turns
	// the kubelet's SIGTERM into stopSignal. Unset: the policy's supervise default.
	// +optional
	Supervise *bool `json:"supervise,omitempty"`
}

// ProfileMatch holds glob patterns (Go path.Match syntax) that select the profile when a container asks for
// auto-detection. Cluster profiles are tried before the built-ins, in name order.
type ProfileMatch struct {
	// Images: a pattern without ':' matches the last path segment of the image repository ("nginx" matches
	// "docker.io/library/nginx:1.27"); with ':' it matches "name:tag" ("php:*fpm*" matches
	// "php:8.3-fpm-alpine").
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^\S+$`
	Images []string `json:"images,omitempty"`

	// Commands: a pattern matches the basename of the program the container runs (its first command word, or
	// its first args word when command is empty, looking through exec, env, tini, dumb-init, `python -m` and
	// `bundle exec`).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^\S+$`
	Commands []string `json:"commands,omitempty"`
}

// ShutdownProfileStatus is written by the webhook (Accepted) and, in policy mode, by the policy controller
// (PolicyCompiled); each writes only its own condition.
type ShutdownProfileStatus struct {
	// ObservedGeneration is the metadata.generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Accepted (the webhook uses the profile), PolicyCompiled (the policy controller compiled it
	// into the applied admission policy).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ShutdownProfile adds a shutdown profile to the cluster, or overrides a built-in one of the same name field by
// field. Pods select it by name with the lastcall.dev/profile annotation, or through its match rules.
//
// The name is used in annotations, so it must be a DNS label; "none" and "auto" are reserved.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=sp,categories=lastcall
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="Signal",type=string,JSONPath=`.spec.stopSignal`
// +kubebuilder:printcolumn:name="Delay",type=string,JSONPath=`.spec.drainDelay`
// +kubebuilder:printcolumn:name="Timeout",type=string,JSONPath=`.spec.drainTimeout`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="PolicyCompiled",type=string,JSONPath=`.status.conditions[?(@.type=="PolicyCompiled")].status`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label (at most 63 lowercase letters, digits and '-'): pods name profiles in annotations"
// +kubebuilder:validation:XValidation:rule="!(self.metadata.name in ['none', 'auto'])",message="metadata.name: 'none' and 'auto' are reserved profile names"
// +kubebuilder:validation:XValidation:rule="self.metadata.name in ['http', 'nginx', 'php-fpm', 'apache-httpd', 'haproxy', 'gunicorn', 'uvicorn', 'celery', 'sidekiq', 'postgres'] || (has(self.spec) && has(self.spec.stopSignal))",message="spec.stopSignal is required for a profile that does not override a built-in (http, nginx, php-fpm, apache-httpd, haproxy, gunicorn, uvicorn, celery, sidekiq, postgres)",fieldPath=`.spec.stopSignal`,reason=FieldValueRequired
type ShutdownProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec ShutdownProfileSpec `json:"spec,omitempty"`
	// +optional
	Status ShutdownProfileStatus `json:"status,omitempty"`
}

// ShutdownProfileList is a list of ShutdownProfiles.
//
// +kubebuilder:object:root=true
type ShutdownProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ShutdownProfile `json:"items"`
}
