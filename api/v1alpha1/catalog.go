package v1alpha1

import "github.com/lastcall-dev/lastcall/pkg/profiles"

// Override is the ShutdownProfile as the profile catalog layers it over the built-ins: the fields it sets, and
// where it comes from ("ShutdownProfile/<name>", shown by `lastcall explain` and the profiles list). It is the
// one conversion from the API type: the webhook's reconciler, the CLI's --profiles and the golden fixtures
// all go through it, so a new spec field is converted once.
func (sp *ShutdownProfile) Override() profiles.Override {
	o := profiles.Override{
		Name: sp.Name, Description: sp.Spec.Description, StopSignal: sp.Spec.StopSignal,
		Checks: sp.Spec.Checks, Supervise: sp.Spec.Supervise, Role: sp.Spec.Role, Source: "ShutdownProfile/" + sp.Name,
	}
	if sp.Spec.DrainDelay != nil {
		d := sp.Spec.DrainDelay.Duration
		o.DrainDelay = &d
	}
	if sp.Spec.DrainTimeout != nil {
		d := sp.Spec.DrainTimeout.Duration
		o.DrainTimeout = &d
	}
	if m := sp.Spec.Match; m != nil {
		o.Match = &profiles.Match{Images: m.Images, Commands: m.Commands}
	}
	return o
}

// Catalog layers ShutdownProfiles over the built-in profiles. Each invalid profile is left out and reported,
// keyed by name, so one bad ShutdownProfile never takes the others down.
func Catalog(items []ShutdownProfile) (*profiles.Catalog, map[string]error) {
	ovs := make([]profiles.Override, 0, len(items))
	for i := range items {
		ovs = append(ovs, items[i].Override())
	}
	return profiles.Builtins().Layer(ovs)
}
