// Package v1alpha1 holds the lastcall.dev/v1alpha1 API: the cluster-scoped ShutdownProfile, with which cluster
// admins add shutdown profiles or override the built-in ones field by field, and its one conversion into the
// engine's profile catalog (Catalog).
//
// The CRD schema (config/crd/bases) and the deepcopy functions are generated from the markers in this package
// by `make generate`; edit the types, never the generated files.
//
// The package depends on apimachinery alone (no controller-runtime): the offline CLI decodes ShutdownProfiles
// with it and must stay small.
//
// +kubebuilder:object:generate=true
// +groupName=lastcall.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "lastcall.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ShutdownProfile{}, &ShutdownProfileList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
