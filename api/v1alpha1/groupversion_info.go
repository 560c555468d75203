// Package v1alpha1 holds the lastcall.dev/v1alpha1 API: the cluster-scoped ShutdownProfile, with which cluster
// admins add shutdown profiles or override the built-in ones field by field.
//
// The CRD schema (config/crd/bases) and the deepcopy functions are generated from the markers in this package
// by `make generate`; edit the types, never the generated files.
//
// +kubebuilder:object:generate=true
// +groupName=lastcall.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "lastcall.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
