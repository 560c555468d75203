package namespaces

import (
	"context"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

func nsMeta(name string, labels, annotations map[string]string) *metav1.PartialObjectMetadata {
	m := Meta()
	m.Name, m.Labels, m.Annotations = name, labels, annotations
	m.UID, m.ResourceVersion = types.UID("uid-"+name), "1"
	m.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	return m
}

func sameMap(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func mustNamespace(t *testing.T, x *Index, name string, want mutate.Namespace) {
	t.Helper()
	got, ok := x.Namespace(name)
	if !ok {
		t.Fatalf("namespace %s is not indexed", name)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("namespace %s = %+v, want %+v", name, got, want)
	}
}

func mustNotKnow(t *testing.T, x *Index, name string) {
	t.Helper()
	if got, ok := x.Namespace(name); ok || !reflect.DeepEqual(got, mutate.Namespace{Name: name}) {
		t.Fatalf("namespace %s = %+v, %v; want unknown", name, got, ok)
	}
}

func TestIndexKeepsOnlyLastcallKeys(t *testing.T) {
	x := NewIndex(nil)
	if x.HasSynced() {
		t.Fatal("synced before the first list")
	}
	mustNotKnow(t, x, "a")
	err := x.Replace([]any{
		nsMeta("a", map[string]string{"lastcall.dev/inject": "enabled", "team": "x"}, map[string]string{"owner": "me", "lastcall.dev/default-profile": "http"}),
		nsMeta("plain", map[string]string{"team": "y"}, map[string]string{"owner": "you"}),
	}, "10")
	if err != nil {
		t.Fatal(err)
	}
	if !x.HasSynced() || len(x.byName) != 2 {
		t.Fatalf("synced %v with %d namespaces after a list of 2", x.HasSynced(), len(x.byName))
	}
	mustNamespace(t, x, "a", mutate.Namespace{Name: "a",
		Labels: map[string]string{"lastcall.dev/inject": "enabled"}, Annotations: map[string]string{"lastcall.dev/default-profile": "http"}})
	// Known, but without any lastcall key: nothing is stored for it besides its name.
	mustNamespace(t, x, "plain", mutate.Namespace{Name: "plain"})
	if x.byName["plain"] != nil {
		t.Errorf("a namespace without lastcall keys holds an entry: %+v", x.byName["plain"])
	}
	mustNotKnow(t, x, "missing")
}

func TestIndexFollowsUpdatesAndDeletes(t *testing.T) {
	x := NewIndex(nil)
	if err := x.Replace([]any{nsMeta("a", nil, nil), nsMeta("b", nil, nil), nsMeta("gone", nil, nil)}, "1"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"a namespace is added", func() error {
			return x.Add(nsMeta("c", map[string]string{"lastcall.dev/inject": "enabled"}, nil))
		}},
		{"a namespace gains a label", func() error {
			return x.Update(nsMeta("a", map[string]string{"lastcall.dev/inject": "disabled", "team": "x"}, nil))
		}},
		{"a namespace loses its lastcall keys", func() error { return x.Update(nsMeta("c", map[string]string{"team": "x"}, nil)) }},
		{"a namespace is deleted", func() error { return x.Delete(nsMeta("b", nil, nil)) }},
		{"a missed deletion arrives as a tombstone", func() error {
			return x.Delete(cache.DeletedFinalStateUnknown{Key: "gone", Obj: nsMeta("gone", nil, nil)})
		}},
		{"a tombstone without its object still deletes", func() error {
			if err := x.Add(nsMeta("tomb", nil, nil)); err != nil {
				return err
			}
			return x.Delete(cache.DeletedFinalStateUnknown{Key: "tomb"})
		}},
		{"deleting an unknown namespace is no error", func() error { return x.Delete(nsMeta("never", nil, nil)) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	mustNamespace(t, x, "a", mutate.Namespace{Name: "a", Labels: map[string]string{"lastcall.dev/inject": "disabled"}})
	mustNamespace(t, x, "c", mutate.Namespace{Name: "c"})
	for _, name := range []string{"b", "gone", "tomb", "never"} {
		mustNotKnow(t, x, name)
	}
	if err := x.Add("not an object"); err == nil {
		t.Error("a non-object was indexed without an error")
	}

	// A relist replaces everything: namespaces deleted while the watch was down disappear.
	if err := x.Replace([]any{nsMeta("d", nil, map[string]string{"lastcall.dev/default-profile": "grpc"})}, "2"); err != nil {
		t.Fatal(err)
	}
	mustNotKnow(t, x, "a")
	mustNamespace(t, x, "d", mutate.Namespace{Name: "d", Annotations: map[string]string{"lastcall.dev/default-profile": "grpc"}})
}

// Namespaces with the same lastcall keys share one entry, which keeps 10,000 namespaces small (test/memory);
// sets that only look alike must not be merged.
func TestIndexSharesEqualKeys(t *testing.T) {
	x := NewIndex(nil)
	enabled := map[string]string{"lastcall.dev/inject": "enabled"}
	objs := []any{
		nsMeta("a", map[string]string{"lastcall.dev/inject": "enabled", "team": "a"}, nil),
		nsMeta("b", map[string]string{"team": "b", "lastcall.dev/inject": "enabled"}, map[string]string{"owner": "b"}),
		// The same key as a label in one namespace and as an annotation in the other.
		nsMeta("as-annotation", nil, enabled),
		// "a=b" + "c" and "a" + "b=c" must not collide.
		nsMeta("x", map[string]string{"lastcall.dev/a": "1\x00lastcall.dev/b=2"}, nil),
		nsMeta("y", map[string]string{"lastcall.dev/a": "1", "lastcall.dev/b": "2"}, nil),
	}
	if err := x.Replace(objs, "1"); err != nil {
		t.Fatal(err)
	}
	if err := x.Add(nsMeta("later", enabled, nil)); err != nil {
		t.Fatal(err)
	}
	a, b, later := x.byName["a"], x.byName["b"], x.byName["later"]
	if a == nil || a != b || a != later || !reflect.DeepEqual(a.labels, enabled) {
		t.Fatalf("equal keys not shared: %p %p %p", a, b, later)
	}
	if ann := x.byName["as-annotation"]; ann == a || !reflect.DeepEqual(ann.annotations, enabled) || ann.labels != nil {
		t.Errorf("a label and an annotation were merged: %+v", ann)
	}
	if x.byName["x"] == x.byName["y"] || len(x.byName["y"].labels) != 2 {
		t.Errorf("distinct sets shared an entry: %+v %+v", x.byName["x"], x.byName["y"])
	}
	// Different annotations, the same labels: the entries differ and the label map is still shared.
	if err := x.Add(nsMeta("other-default", enabled, map[string]string{"lastcall.dev/default-profile": "grpc"})); err != nil {
		t.Fatal(err)
	}
	if od := x.byName["other-default"]; od == a || !sameMap(od.labels, a.labels) || od.annotations["lastcall.dev/default-profile"] != "grpc" {
		t.Errorf("labels not shared across different annotations: %+v vs %+v", od, a)
	}
	// Lookups hand out the shared maps rather than copies: the engine only reads them.
	na, _ := x.Namespace("a")
	nb, _ := x.Namespace("b")
	if !sameMap(na.Labels, nb.Labels) {
		t.Error("lookups copy the shared maps")
	}
}

func TestIndexSharingIsBounded(t *testing.T) {
	x := NewIndex(nil)
	if err := x.Replace(nil, "1"); err != nil {
		t.Fatal(err)
	}
	for i := range maxShared + 10 {
		name := "ns-" + strconv.Itoa(i)
		if err := x.Add(nsMeta(name, nil, map[string]string{"lastcall.dev/default-profile": name})); err != nil {
			t.Fatal(err)
		}
	}
	if n, m := len(x.shared.entries), len(x.shared.maps); n != maxShared || m != maxShared {
		t.Fatalf("%d entries and %d maps shared, want the bound %d", n, m, maxShared)
	}
	// Past the bound, namespaces still get their own keys.
	last := "ns-" + strconv.Itoa(maxShared+9)
	mustNamespace(t, x, last, mutate.Namespace{Name: last, Annotations: map[string]string{"lastcall.dev/default-profile": last}})
	// A relist starts the shared sets afresh from what the namespaces carry.
	if err := x.Replace([]any{nsMeta("only", nil, map[string]string{"lastcall.dev/default-profile": "http"})}, "2"); err != nil {
		t.Fatal(err)
	}
	if n, m := len(x.shared.entries), len(x.shared.maps); n != 1 || m != 1 {
		t.Fatalf("%d entries and %d maps shared after a relist of one namespace, want 1 and 1", n, m)
	}
}

// Admission reads while the reflector writes; run with -race.
func TestIndexConcurrentReads(t *testing.T) {
	x := NewIndex(nil)
	if err := x.Replace([]any{nsMeta("stable", map[string]string{"lastcall.dev/inject": "enabled"}, nil)}, "1"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if ns, ok := x.Namespace("stable"); !ok || ns.Labels["lastcall.dev/inject"] != "enabled" {
					t.Errorf("stable namespace read as %+v, %v", ns, ok)
					return
				}
				ns, _ := x.Namespace("churn")
				_ = ns.Annotations["lastcall.dev/default-profile"]
			}
		}()
	}
	for i := range 2000 {
		var err error
		switch i % 4 {
		case 0:
			err = x.Add(nsMeta("churn", nil, map[string]string{"lastcall.dev/default-profile": "p" + strconv.Itoa(i)}))
		case 1:
			err = x.Update(nsMeta("churn", map[string]string{"lastcall.dev/inject": "enabled"}, nil))
		case 2:
			err = x.Delete(cache.DeletedFinalStateUnknown{Key: "churn"})
		case 3:
			err = x.Replace([]any{nsMeta("stable", map[string]string{"lastcall.dev/inject": "enabled"}, nil)}, strconv.Itoa(i))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	readers.Wait()
}

// When the reflector streams the initial list, it holds the transformed objects until the list ends: they
// must carry only the name and lastcall keys, and still index the same.
func TestIndexTransformer(t *testing.T) {
	x := NewIndex(nil)
	out, err := x.Transformer()(nsMeta("a", map[string]string{"lastcall.dev/inject": "enabled", "team": "x"}, map[string]string{"owner": "me"}))
	if err != nil {
		t.Fatal(err)
	}
	m := out.(*metav1.PartialObjectMetadata)
	want := Meta()
	want.Name, want.ResourceVersion, want.Labels = "a", "1", map[string]string{"lastcall.dev/inject": "enabled"}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("transformed to %+v, want %+v", m, want)
	}
	if err := x.Replace([]any{m}, "1"); err != nil {
		t.Fatal(err)
	}
	mustNamespace(t, x, "a", mutate.Namespace{Name: "a", Labels: map[string]string{"lastcall.dev/inject": "enabled"}})
}

// noWatchList marks the fake list-watch below as a plain list then watch: it does not stream the initial list.
type noWatchList struct{}

func (noWatchList) IsWatchListSemanticsUnSupported() bool { return true }

// Start drives the index with a real reflector: it is synced after the first list, and watch events apply.
func TestIndexStartListsThenWatches(t *testing.T) {
	w := watch.NewFake()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return &metav1.PartialObjectMetadataList{ListMeta: metav1.ListMeta{ResourceVersion: "1"},
				Items: []metav1.PartialObjectMetadata{*nsMeta("listed", map[string]string{"lastcall.dev/inject": "enabled"}, nil)}}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return w, nil },
	}
	x := NewIndex(cache.ToListWatcherWithWatchListSemantics(lw, noWatchList{}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- x.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
		}
	}
	waitFor("the first list is indexed", x.HasSynced)
	mustNamespace(t, x, "listed", mutate.Namespace{Name: "listed", Labels: map[string]string{"lastcall.dev/inject": "enabled"}})

	added := nsMeta("added", nil, map[string]string{"lastcall.dev/default-profile": "http"})
	added.ResourceVersion = "2"
	w.Add(added)
	changed := nsMeta("listed", map[string]string{"lastcall.dev/inject": "disabled"}, nil)
	changed.ResourceVersion = "3"
	w.Modify(changed)
	waitFor("the added and the changed namespace are indexed", func() bool {
		listed, _ := x.Namespace("listed")
		added, _ := x.Namespace("added")
		return listed.Labels["lastcall.dev/inject"] == "disabled" && added.Annotations["lastcall.dev/default-profile"] == "http"
	})
	gone := nsMeta("added", nil, nil)
	gone.ResourceVersion = "4"
	w.Delete(gone)
	waitFor("the deleted namespace is gone", func() bool {
		_, known := x.Namespace("added")
		return !known
	})
}
