package webhook

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// NamespaceMeta returns an empty metadata-only Namespace, the object the webhook caches for namespaces.
func NamespaceMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return m
}

// TrimNamespace keeps only what the engine reads (name, lastcall labels and annotations), so 10,000 cached
// namespaces stay small: managedFields and foreign annotations are often most of an object's size.
func TrimNamespace(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	m.ManagedFields = nil
	m.OwnerReferences = nil
	m.Finalizers = nil
	m.Annotations = namespaceMaps.intern(onlyLastcall(m.Annotations))
	m.Labels = namespaceMaps.intern(onlyLastcall(m.Labels))
	return m, nil
}

// namespaceMaps shares one map between all cached namespaces whose lastcall labels (or annotations) are the
// same: typically thousands of namespaces carry just lastcall.dev/inject=enabled, and a one-entry Go map costs
// about 300 bytes. Sharing is safe because cached objects are never modified: the cache hands out deep copies.
var namespaceMaps = &mapInterner{maps: map[string]map[string]string{}}

// maxInterned bounds the interner: past it, new distinct sets are kept per namespace as before.
const maxInterned = 4096

type mapInterner struct {
	mu   sync.Mutex
	maps map[string]map[string]string
}

// intern returns a shared map equal to m (nil for an empty m).
func (in *mapInterner) intern(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		// Length-prefixed, so no key or value (annotation values may hold any byte) can make two sets collide.
		for _, part := range [2]string{k, m[k]} {
			b.WriteString(strconv.Itoa(len(part)))
			b.WriteByte(':')
			b.WriteString(part)
		}
	}
	key := b.String()
	in.mu.Lock()
	defer in.mu.Unlock()
	if shared, ok := in.maps[key]; ok {
		return shared
	}
	if len(in.maps) < maxInterned {
		in.maps[key] = m
	}
	return m
}

func onlyLastcall(in map[string]string) map[string]string {
	var keep map[string]string
	for k, v := range in {
		if strings.HasPrefix(k, mutate.Prefix) {
			if keep == nil {
				keep = make(map[string]string, 1)
			}
			keep[k] = v
		}
	}
	return keep
}

// CachedNamespaces reads namespace metadata from the manager's cache.
type CachedNamespaces struct{ Reader client.Reader }

// Namespace implements NamespaceGetter.
func (c CachedNamespaces) Namespace(name string) (mutate.Namespace, bool) {
	m := NamespaceMeta()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Reader.Get(ctx, types.NamespacedName{Name: name}, m); err != nil {
		return mutate.Namespace{Name: name}, false
	}
	return mutate.Namespace{Name: name, Labels: m.Labels, Annotations: m.Annotations}, true
}

// ProfileReconciler keeps the catalog (built-ins layered with every ShutdownProfile) current and reports on
// each ShutdownProfile whether it was accepted. Admission reads the catalog through an atomic pointer, so a
// change applies to the next pod without locks or restarts.
type ProfileReconciler struct {
	Client  client.Client
	Log     logr.Logger
	current atomic.Pointer[profiles.Catalog]
	synced  atomic.Bool
}

// NewProfileReconciler starts with the built-in catalog, so the webhook works before the CRD exists.
func NewProfileReconciler(c client.Client, log logr.Logger) *ProfileReconciler {
	r := &ProfileReconciler{Client: c, Log: log}
	r.current.Store(profiles.Builtins())
	return r
}

// Catalog implements CatalogSource.
func (r *ProfileReconciler) Catalog() *profiles.Catalog { return r.current.Load() }

// Synced reports whether the catalog reflects the cluster's ShutdownProfiles at least once.
func (r *ProfileReconciler) Synced() bool { return r.synced.Load() }

// Reconcile rebuilds the whole catalog from the cache (cheap: a handful of profiles) and updates the status of
// the profile that changed.
func (r *ProfileReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var list v1alpha1.ShutdownProfileList
	if err := r.Client.List(ctx, &list); err != nil {
		return ctrl.Result{}, fmt.Errorf("list ShutdownProfiles: %w", err)
	}
	cat, errs := Layer(list.Items)
	r.current.Store(cat)
	r.synced.Store(true)
	r.Log.Info("profile catalog updated", "profiles", len(cat.Names()), "rejected", len(errs))

	for i := range list.Items {
		sp := &list.Items[i]
		if sp.Name != req.Name {
			continue
		}
		cond := metav1.Condition{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Valid", Message: "in use by the webhook", ObservedGeneration: sp.Generation}
		if _, builtin := profiles.Builtins().Get(sp.Name); builtin {
			cond.Message = "in use by the webhook; overrides the built-in profile " + sp.Name
		}
		if err, bad := errs[sp.Name]; bad {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Invalid", err.Error()
		}
		old := meta.FindStatusCondition(sp.Status.Conditions, cond.Type)
		if old != nil && old.Status == cond.Status && old.Message == cond.Message && old.ObservedGeneration == cond.ObservedGeneration {
			return ctrl.Result{}, nil
		}
		meta.SetStatusCondition(&sp.Status.Conditions, cond)
		sp.Status.ObservedGeneration = sp.Generation
		// Every replica reconciles; a conflict means another one already wrote the same answer.
		if err := r.Client.Status().Update(ctx, sp); err != nil && !apierrors.IsConflict(err) {
			return ctrl.Result{}, fmt.Errorf("update status of ShutdownProfile %s: %w", sp.Name, err)
		}
	}
	return ctrl.Result{}, nil
}

// Layer turns ShutdownProfiles into a catalog over the built-ins.
func Layer(items []v1alpha1.ShutdownProfile) (*profiles.Catalog, map[string]error) {
	ovs := make([]profiles.Override, 0, len(items))
	for i := range items {
		ovs = append(ovs, OverrideFrom(&items[i]))
	}
	return profiles.Builtins().Layer(ovs)
}

// OverrideFrom converts a ShutdownProfile into a catalog override.
func OverrideFrom(sp *v1alpha1.ShutdownProfile) profiles.Override {
	o := profiles.Override{
		Name: sp.Name, Description: sp.Spec.Description, StopSignal: sp.Spec.StopSignal,
		Checks: sp.Spec.Checks, Supervise: sp.Spec.Supervise, Source: "ShutdownProfile/" + sp.Name,
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
