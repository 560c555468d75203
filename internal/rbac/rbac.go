// Package rbac holds no code: its markers are the single source of the permissions lastcall-webhook needs.
// `make generate` turns them into config/rbac/role.yaml (a ClusterRole and a namespaced Role); the Helm chart's
// RBAC templates are checked against that file by test/chart (TestRBACParity).
//
// Cluster-wide (ClusterRole):
//   - namespaces: the webhook keeps a metadata-only informer of namespaces for the
//     lastcall.dev/default-profile annotation.
//   - shutdownprofiles: the informer feeding the profile catalog; status for the Accepted condition.
//   - mutatingwebhookconfigurations: in self-managed certificate mode the webhook patches its CA bundle into
//     its own configuration. get/update/patch are limited to that one object by name; list/watch cannot be
//     limited by name for an informer, so they are not.
//
// In the release namespace only (Role):
//   - secrets: the self-managed certificate mode keeps its CA and serving certificate in one Secret.
//   - events: the webhook reports profile problems as events.
//
// The shutdown observer (cluster-wide):
//   - pods: get/list/watch, the watch of pods labelled lastcall.dev/managed (the label is selected by the API
//     server, but RBAC cannot be limited by label).
//   - events: create/patch, the ShutdownKilled events on workloads in any namespace.
//
// The webhook itself is not leader-elected, every replica serves; only the observer runs on one replica at
// a time, elected by a Lease in the release namespace (Role): create (cannot be limited by name), get/update
// of that one Lease.
//
// The resourceNames below are the names the default install uses (release "lastcall"); the chart renders its
// own release name in their place.
//
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=lastcall.dev,resources=shutdownprofiles,verbs=get;list;watch
// +kubebuilder:rbac:groups=lastcall.dev,resources=shutdownprofiles/status,verbs=update;patch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;update;patch,resourceNames=lastcall
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=create,namespace=lastcall-system
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;update,resourceNames=lastcall-observer,namespace=lastcall-system
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update,namespace=lastcall-system
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=lastcall-system
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch,namespace=lastcall-system
package rbac
