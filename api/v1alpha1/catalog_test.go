package v1alpha1

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Every spec field reaches the catalog: a field added to ShutdownProfileSpec but not to Override would be
// accepted by the API server and then silently ignored by the webhook and the CLI.
func TestOverrideConvertsEveryField(t *testing.T) {
	yes := true
	samples := map[reflect.Type]any{
		reflect.TypeOf(""):                 "SIGQUIT",
		reflect.TypeOf(&metav1.Duration{}): &metav1.Duration{Duration: 7 * time.Second},
		reflect.TypeOf([]string{}):         []string{"php-fpm-process-control-timeout"},
		reflect.TypeOf(&ProfileMatch{}):    &ProfileMatch{Images: []string{"envoy"}, Commands: []string{"envoy"}},
		reflect.TypeOf(&yes):               &yes,
	}
	empty := (&ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "envoy"}}).Override()
	if empty.Name != "envoy" || empty.Source != "ShutdownProfile/envoy" {
		t.Fatalf("name and source: got %q, %q", empty.Name, empty.Source)
	}
	st := reflect.TypeOf(ShutdownProfileSpec{})
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		v, ok := samples[f.Type]
		if !ok {
			t.Fatalf("spec.%s: no sample value for type %s; add one here and convert the field in Override", f.Name, f.Type)
		}
		sp := &ShutdownProfile{ObjectMeta: metav1.ObjectMeta{Name: "envoy"}}
		reflect.ValueOf(&sp.Spec).Elem().Field(i).Set(reflect.ValueOf(v))
		if got := sp.Override(); reflect.DeepEqual(got, empty) {
			t.Errorf("spec.%s is not converted: Override() is the same with and without it", f.Name)
		}
	}
}

func TestCatalogReportsInvalidProfilesAndKeepsTheRest(t *testing.T) {
	d := &metav1.Duration{Duration: 3 * time.Second}
	cat, errs := Catalog([]ShutdownProfile{
		{ObjectMeta: metav1.ObjectMeta{Name: "envoy"}, Spec: ShutdownProfileSpec{StopSignal: "SIGTERM", DrainDelay: d}},
		{ObjectMeta: metav1.ObjectMeta{Name: "worker"}}, // a new profile without a stop signal
	})
	if _, bad := errs["worker"]; !bad || len(errs) != 1 {
		t.Fatalf("errors = %v, want one for worker", errs)
	}
	p, ok := cat.Get("envoy")
	if !ok || p.DrainDelay != 3*time.Second || p.Source != "ShutdownProfile/envoy" {
		t.Fatalf("envoy = %+v, %v", p, ok)
	}
	if _, ok := cat.Get("nginx"); !ok {
		t.Fatal("the built-ins are gone")
	}
}
