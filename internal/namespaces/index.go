package namespaces

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

// Index answers the engine's namespace lookups from a compact index that a reflector keeps current.
//
// The engine needs a namespace's name and its lastcall labels and annotations, nothing else. An informer keeps
// a whole object per namespace in its store (a trimmed PartialObjectMetadata still costs about 700 bytes with
// its ObjectMeta, strings and store entry), so 10,000 namespaces were half of the webhook's heap. The index is
// instead the reflector's store itself: it keeps the name and a pointer to the namespace's lastcall keys, nil
// for the common namespace without any, and namespaces with the same keys share one entry. No object outlives
// the event that carried it.
//
// The maps handed out by Namespace are shared between namespaces and with the index: callers must not modify
// them (the engine only reads them).
type Index struct {
	lw cache.ListerWatcher

	mu     sync.RWMutex
	byName map[string]*namespaceKeys
	// shared lets namespaces with equal lastcall keys hold one pointer to one entry. It is rebuilt on every
	// full list (Replace), so sets no namespace carries any more do not pile up between relists.
	shared *sharedKeys
	synced atomic.Bool
}

// namespaceKeys are a namespace's lastcall labels and annotations; entries are never modified once indexed.
type namespaceKeys struct {
	labels, annotations map[string]string
}

// maxShared bounds the shared entries and maps (each): past it, a new distinct set is kept per namespace.
const maxShared = 4096

// sharedKeys interns entries, and separately their label and annotation maps: when every namespace carries a
// different annotation (the worst case), they still share their labels, and a one-entry Go map costs about 330
// bytes. Keys are canonical encodings (see canonical).
type sharedKeys struct {
	entries map[string]*namespaceKeys
	maps    map[string]map[string]string
}

func newSharedKeys() *sharedKeys {
	return &sharedKeys{entries: map[string]*namespaceKeys{}, maps: map[string]map[string]string{}}
}

// NewIndex returns an empty index that Start fills from lw (namespaces as metadata-only objects).
func NewIndex(lw cache.ListerWatcher) *Index {
	return &Index{lw: lw, byName: map[string]*namespaceKeys{}, shared: newSharedKeys()}
}

// ListWatch lists and watches namespaces as metadata only: the index reads nothing from the spec or
// status, so there is no reason to transfer and decode them.
func ListWatch(c metadata.Interface) cache.ListerWatcher {
	res := c.Resource(corev1.SchemeGroupVersion.WithResource("namespaces"))
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return res.Watch(ctx, o)
		},
	}
}

// Namespace implements webhook.NamespaceGetter.
func (x *Index) Namespace(name string) (mutate.Namespace, bool) {
	x.mu.RLock()
	e, ok := x.byName[name]
	x.mu.RUnlock()
	ns := mutate.Namespace{Name: name}
	if e != nil {
		ns.Labels, ns.Annotations = e.labels, e.annotations
	}
	return ns, ok
}

// HasSynced reports whether the index holds a full list of the cluster's namespaces.
func (x *Index) HasSynced() bool { return x.synced.Load() }

// Start runs the reflector until ctx ends: a list, then a watch, relisting when the watch cannot resume.
func (x *Index) Start(ctx context.Context) error {
	r := cache.NewReflectorWithOptions(x.lw, Meta(), x, cache.ReflectorOptions{Name: "lastcall-namespaces"})
	r.RunWithContext(ctx)
	return nil
}

// NeedLeaderElection: every replica admits pods, so every replica needs the index.
func (x *Index) NeedLeaderElection() bool { return false }

// Add implements cache.ReflectorStore.
func (x *Index) Add(obj any) error { return x.Update(obj) }

// Update implements cache.ReflectorStore.
func (x *Index) Update(obj any) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return fmt.Errorf("namespace index: %w", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.byName[strings.Clone(m.GetName())] = x.shared.entry(m.GetLabels(), m.GetAnnotations())
	return nil
}

// Delete implements cache.ReflectorStore. It also takes the tombstone an informer hands out for a namespace
// whose deletion it missed.
func (x *Index) Delete(obj any) error {
	var name string
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		// Namespaces are cluster-scoped: the key is the name.
		name = t.Key
	} else {
		m, err := meta.Accessor(obj)
		if err != nil {
			return fmt.Errorf("namespace index: %w", err)
		}
		name = m.GetName()
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.byName, name)
	return nil
}

// Replace implements cache.ReflectorStore: a full list replaces the whole index, which is how namespaces
// deleted while the watch was down disappear.
func (x *Index) Replace(list []any, _ string) error {
	byName := make(map[string]*namespaceKeys, len(list))
	shared := newSharedKeys()
	for _, obj := range list {
		m, err := meta.Accessor(obj)
		if err != nil {
			return fmt.Errorf("namespace index: %w", err)
		}
		// Copies of the name and keys (here and in Update): the index must not pin the decoded list, and
		// copies made together after the list sit together in memory rather than scattered among its garbage.
		byName[strings.Clone(m.GetName())] = shared.entry(m.GetLabels(), m.GetAnnotations())
	}
	x.mu.Lock()
	x.byName, x.shared = byName, shared
	x.mu.Unlock()
	x.synced.Store(true)
	return nil
}

// Resync implements cache.ReflectorStore; the index has nothing to resync.
func (x *Index) Resync() error { return nil }

// Transformer implements cache.TransformingStore: when the reflector streams the initial list (watch-list), it
// holds every namespace until the list ends, and this keeps only what the index reads.
func (x *Index) Transformer() cache.TransformFunc { return trimNamespace }

func trimNamespace(obj any) (any, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("namespace index: %w", err)
	}
	t := Meta()
	t.Name, t.ResourceVersion = m.GetName(), m.GetResourceVersion()
	t.Labels, t.Annotations = onlyLastcall(m.GetLabels()), onlyLastcall(m.GetAnnotations())
	return t, nil
}

// entry returns the entry for the lastcall keys among labels and annotations, nil when there are none. Only
// a set not seen before is copied out of the object.
func (s *sharedKeys) entry(labels, annotations map[string]string) *namespaceKeys {
	lk, ak := canonical(labels), canonical(annotations)
	if lk == "" && ak == "" {
		return nil
	}
	// The labels' length comes first, so a key moved from the labels to the annotations changes the key.
	key := strconv.Itoa(len(lk)) + ":" + lk + ak
	if e, ok := s.entries[key]; ok {
		return e
	}
	e := &namespaceKeys{labels: s.sharedMap(lk, labels), annotations: s.sharedMap(ak, annotations)}
	if len(s.entries) < maxShared {
		s.entries[key] = e
	}
	return e
}

func (s *sharedKeys) sharedMap(key string, m map[string]string) map[string]string {
	if key == "" {
		return nil
	}
	if shared, ok := s.maps[key]; ok {
		return shared
	}
	own := onlyLastcall(m)
	if len(s.maps) < maxShared {
		s.maps[key] = own
	}
	return own
}

// canonical encodes the lastcall keys of m so that only equal sets encode equal: sorted, and every key and
// value length-prefixed, since annotation values may hold any byte. It is "" when m has no lastcall key.
func canonical(m map[string]string) string {
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, mutate.Prefix) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, part := range [2]string{k, m[k]} {
			b.WriteString(strconv.Itoa(len(part)))
			b.WriteByte(':')
			b.WriteString(part)
		}
	}
	return b.String()
}

// onlyLastcall returns the lastcall keys of in, nil if there are none. The keys and values are copies, so the
// index does not pin the decoded object they came from.
func onlyLastcall(in map[string]string) map[string]string {
	var keep map[string]string
	for k, v := range in {
		if strings.HasPrefix(k, mutate.Prefix) {
			if keep == nil {
				keep = make(map[string]string, 1)
			}
			keep[strings.Clone(k)] = strings.Clone(v)
		}
	}
	return keep
}

var _ cache.TransformingStore = (*Index)(nil)

// Meta returns an empty metadata-only Namespace, the type the namespace reflector lists and watches.
func Meta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return m
}
