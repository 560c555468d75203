// Package webhook is the admission plumbing around the engine: decode the AdmissionReview's Pod, run
// pkg/mutate, turn the typed difference into a JSONPatch (pkg/patch, the same code the CLI applies), and
// answer with warnings and metrics. Whatever goes
// wrong inside lastcall, the pod is admitted: a graceful-shutdown tool must never block a deployment.
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/patch"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// Path is where the server serves the pod webhook.
const Path = "/mutate-v1-pod"

// NamespaceGetter returns cached namespace metadata. ok is false when the namespace is not (yet) known; the
// engine then works without namespace labels and annotations. The maps may be shared with the cache and with
// other namespaces: callers only read them.
type NamespaceGetter interface {
	Namespace(name string) (mutate.Namespace, bool)
}

// CatalogSource returns the current profile catalog (built-ins layered with ShutdownProfiles).
type CatalogSource interface {
	Catalog() *profiles.Catalog
}

// StaticCatalog is a CatalogSource that never changes (tests, and the server before the CRD informer syncs).
type StaticCatalog struct{ C *profiles.Catalog }

// Catalog implements CatalogSource.
func (s StaticCatalog) Catalog() *profiles.Catalog { return s.C }

// Handler is a raw admission.Handler (not a CustomDefaulter) because it must return warnings and decide
// itself what a failure means.
type Handler struct {
	Engine     *mutate.Engine
	Namespaces NamespaceGetter
	Profiles   CatalogSource
	Log        logr.Logger
	Metrics    *Metrics
}

var podKind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	start := time.Now()
	log := h.Log.WithValues("uid", req.UID, "namespace", req.Namespace, "name", req.Name)
	var result, reason string
	defer func() {
		if r := recover(); r != nil {
			// A bug in lastcall must cost the pod its graceful shutdown, never its creation.
			log.Error(fmt.Errorf("panic: %v", r), "admission panicked; pod admitted unchanged", "stack", string(debug.Stack()))
			resp = admission.Allowed("")
			resp.Warnings = []string{"lastcall: internal error; pod admitted without graceful-shutdown injection"}
			result, reason = ResultError, "panic"
		}
		h.Metrics.observe(result, reason, time.Since(start))
	}()

	if req.Operation != admissionv1.Create {
		result, reason = ResultSkipped, "operation-"+string(req.Operation)
		return admission.Allowed("")
	}
	if req.Kind != podKind || req.SubResource != "" {
		result, reason = ResultSkipped, "not-a-pod"
		return admission.Allowed("")
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		log.Error(err, "cannot decode pod; admitted unchanged")
		result, reason = ResultError, "decode"
		resp = admission.Allowed("")
		resp.Warnings = []string{"lastcall: cannot decode the pod (" + truncate(err.Error(), 120) + "); admitted without graceful-shutdown injection"}
		return resp
	}
	nsName := req.Namespace
	if nsName == "" {
		nsName = pod.Namespace
	}
	ns, _ := h.Namespaces.Namespace(nsName)
	if ns.Name == "" {
		ns.Name = nsName
	}

	res := h.Engine.Mutate(pod, ns, h.Profiles.Catalog())
	warnings := res.AllWarnings()
	if msg, deny := res.DenyMessage(h.Engine.Policy().Strict); deny {
		result, reason = ResultDenied, "bad-annotation"
		log.Info("pod denied (strict mode)", "message", msg)
		resp = admission.Denied(msg)
		resp.Result.Code = http.StatusBadRequest
		return resp
	}
	if res.Skip != nil {
		result, reason = ResultSkipped, string(res.Skip.Code)
		log.V(1).Info("pod skipped", "reason", res.Skip.Code, "message", res.Skip.Message)
		resp = admission.Allowed("")
		resp.Warnings = warnings
		return resp
	}

	ops, err := patch.Pod(pod, res.Pod)
	if err != nil {
		log.Error(err, "cannot compute patch; admitted unchanged")
		result, reason = ResultError, "patch"
		resp = admission.Allowed("")
		resp.Warnings = append(warnings, "lastcall: internal error computing the patch; pod admitted without graceful-shutdown injection")
		return resp
	}
	if len(ops) == 0 {
		result, reason = ResultUnchanged, "already-injected"
		resp = admission.Allowed("")
		resp.Warnings = warnings
		return resp
	}
	result, reason = ResultInjected, "injected"
	if res.Observe {
		result, reason = ResultObserved, "observe-mode"
	}
	for _, d := range res.Containers {
		if d.Skip == nil {
			h.Metrics.injected(d.Profile)
		}
	}
	if res.Grace != nil {
		log.V(1).Info("pod injected", "containers", res.Injected(), "grace", res.Grace.After, "warnings", len(warnings))
	} else {
		log.V(1).Info("pod labelled for the shutdown observer (observe mode)")
	}
	resp = admission.Allowed("")
	resp.Patch, resp.PatchType = patch.Encode(ops), &jsonPatchType
	resp.Warnings = warnings
	return resp
}

var jsonPatchType = admissionv1.PatchTypeJSONPatch

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
