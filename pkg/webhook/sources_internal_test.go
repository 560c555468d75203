package webhook

import (
	"reflect"
	"strconv"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func nsMeta(name string, labels, annotations map[string]string) *metav1.PartialObjectMetadata {
	m := NamespaceMeta()
	m.Name, m.Labels, m.Annotations = name, labels, annotations
	m.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	return m
}

func same(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// TrimNamespace keeps only lastcall's keys, and namespaces with the same lastcall keys share one map, which is
// most of what 10,000 cached namespaces cost (the memory bar, test/memory).
func TestTrimNamespaceSharesEqualMaps(t *testing.T) {
	trim := func(m *metav1.PartialObjectMetadata) *metav1.PartialObjectMetadata {
		out, err := TrimNamespace(m)
		if err != nil {
			t.Fatal(err)
		}
		return out.(*metav1.PartialObjectMetadata)
	}
	a := trim(nsMeta("a", map[string]string{"lastcall.dev/inject": "enabled", "team": "x"}, map[string]string{"owner": "me"}))
	b := trim(nsMeta("b", map[string]string{"team": "y", "lastcall.dev/inject": "enabled"}, nil))
	c := trim(nsMeta("c", map[string]string{"lastcall.dev/inject": "disabled"}, map[string]string{"lastcall.dev/default-profile": "http"}))
	if want := map[string]string{"lastcall.dev/inject": "enabled"}; !reflect.DeepEqual(a.Labels, want) || !reflect.DeepEqual(b.Labels, want) {
		t.Fatalf("labels %v and %v, want only %v", a.Labels, b.Labels, want)
	}
	if a.Annotations != nil || b.Annotations != nil || a.ManagedFields != nil {
		t.Fatalf("foreign annotations or managedFields kept: %v %v %v", a.Annotations, b.Annotations, a.ManagedFields)
	}
	if !same(a.Labels, b.Labels) {
		t.Error("two namespaces with the same lastcall labels do not share the map")
	}
	if same(a.Labels, c.Labels) || c.Labels["lastcall.dev/inject"] != "disabled" || c.Annotations["lastcall.dev/default-profile"] != "http" {
		t.Errorf("a different set was shared or changed: %v %v", c.Labels, c.Annotations)
	}
	// "a=b" + "c" and "a" + "b=c" must not collide.
	x := namespaceMaps.intern(map[string]string{"lastcall.dev/a": "1\x00lastcall.dev/b=2"})
	y := namespaceMaps.intern(map[string]string{"lastcall.dev/a": "1", "lastcall.dev/b": "2"})
	if same(x, y) || len(y) != 2 {
		t.Errorf("distinct sets shared one map: %v %v", x, y)
	}
}

func TestInternerIsBoundedAndConcurrent(t *testing.T) {
	in := &mapInterner{maps: map[string]map[string]string{}}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range maxInterned {
				m := in.intern(map[string]string{"lastcall.dev/default-profile": "p" + strconv.Itoa(i+g*maxInterned)})
				if m["lastcall.dev/default-profile"] != "p"+strconv.Itoa(i+g*maxInterned) {
					t.Errorf("intern changed the content: %v", m)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := len(in.maps); n != maxInterned {
		t.Fatalf("%d sets interned, want the bound %d", n, maxInterned)
	}
	if in.intern(map[string]string{}) != nil {
		t.Fatal("an empty set is not nil")
	}
}
