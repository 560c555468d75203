// Package policyctl holds no code: its markers are the single source of the permissions of the policy
// controller (lastcall-webhook --policy-controller, policy mode). `make generate` turns them into
// config/policy-controller/role.yaml; the chart's templates/policy-controller.yaml is checked against that
// file by test/chart (TestPolicyControllerRBACParity).
//
// Cluster-wide (ClusterRole):
//   - shutdownprofiles: the informer the catalog is built from; status for the PolicyCompiled condition (a
//     server-side apply of that one condition).
//   - the admission policies and bindings: list/watch for the drift watch (RBAC cannot limit an informer by
//     name); create/get/patch (server-side apply; creating through it needs create, which RBAC checks with
//     the name from the URL) and delete (a policy the current render does not have) only of the objects it
//     renders, by name: policy.MutatingNames, RetiredNames and ValidatingNames of "lastcall-rendered".
//   - clusterroles: get of its own ClusterRole, which it names as the owner of what it applies, so that
//     deleting the release deletes them (garbage collection).
//   - with the shutdown observer: pods (watch of those labelled lastcall.dev/managed) and events on workloads.
//
// In the release namespace only (Role): its Lease and the observer's (create cannot be limited by name;
// get/update can), and events (leader election reports through them).
//
// The resourceNames are those of the default install (release "lastcall"); the chart renders its own release
// name in their place.
//
// +kubebuilder:rbac:groups=lastcall.dev,resources=shutdownprofiles,verbs=get;list;watch
// +kubebuilder:rbac:groups=lastcall.dev,resources=shutdownprofiles/status,verbs=patch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingadmissionpolicies;mutatingadmissionpolicybindings;validatingadmissionpolicies;validatingadmissionpolicybindings,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingadmissionpolicies;mutatingadmissionpolicybindings;validatingadmissionpolicies;validatingadmissionpolicybindings,verbs=create;get;patch;delete,resourceNames=lastcall-rendered;lastcall-rendered-plain;lastcall-rendered-warnings;lastcall-rendered-warnings-handled;lastcall-rendered-strict
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=get,resourceNames=lastcall-policy-controller
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=create,namespace=lastcall-system
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;update,resourceNames=lastcall-policy-controller;lastcall-observer,namespace=lastcall-system
// +kubebuilder:rbac:groups="";events.k8s.io,resources=events,verbs=create;patch,namespace=lastcall-system
package policyctl
