// Package controller runs the ShutdownProfile controller of the webhook server: it keeps the profile catalog
// that admission reads current, and reports on each ShutdownProfile whether the webhook accepted it.
package controller

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

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

// Catalog implements webhook.CatalogSource.
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
	cat, errs := v1alpha1.Catalog(list.Items)
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
		// Every replica reconciles; a conflict means another one (or the policy controller, writing its own
		// PolicyCompiled) changed the status first: that change is an event, and the next reconcile writes
		// Accepted again if it is still needed.
		if err := r.Client.Status().Update(ctx, sp); err != nil && !apierrors.IsConflict(err) {
			return ctrl.Result{}, fmt.Errorf("update status of ShutdownProfile %s: %w", sp.Name, err)
		}
	}
	return ctrl.Result{}, nil
}
