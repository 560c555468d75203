package webhook_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
	"github.com/lastcall-dev/lastcall/pkg/webhook"
)

const typicalPodJSON = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"shop-7d9f8-abcde","generateName":"shop-7d9f8-","namespace":"shop",
"labels":{"app":"shop","pod-template-hash":"7d9f8"},"annotations":{"prometheus.io/scrape":"true"},
"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"shop-7d9f8","uid":"0b5c6d1e-1111-2222-3333-444455556666","controller":true,"blockOwnerDeletion":true}]},
"spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":8080,"protocol":"TCP"}],"resources":{},
"volumeMounts":[{"name":"sock","mountPath":"/run/php"},{"name":"conf","mountPath":"/etc/app"},{"name":"kube-api-access-x","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],
"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"},
{"name":"php","image":"php:8.3-fpm","env":[{"name":"APP_ENV","value":"prod"},{"name":"DB_HOST","value":"db"}],"resources":{},
"volumeMounts":[{"name":"sock","mountPath":"/run/php"},{"name":"conf","mountPath":"/etc/app"},{"name":"kube-api-access-x","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],
"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],
"volumes":[{"name":"sock","emptyDir":{}},{"name":"conf","configMap":{"name":"shop","defaultMode":420}},
{"name":"kube-api-access-x","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}}],"defaultMode":420}}],
"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"default","serviceAccount":"default",
"securityContext":{},"schedulerName":"default-scheduler","tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],
"priority":0,"enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority"},"status":{}}`

func typicalReview() []byte {
	return review(admissionv1.Create, "Pod", []byte(typicalPodJSON), func(r *admissionv1.AdmissionRequest) { r.Namespace = "shop" })
}

func benchHandler() *webhook.Handler {
	return &webhook.Handler{
		Engine:     mutate.New(mutate.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "bench"}),
		Namespaces: namespaces{"shop": {Name: "shop", Labels: map[string]string{mutate.LabelInject: "enabled"}}},
		Profiles:   webhook.StaticCatalog{C: profiles.Builtins()}, Log: logr.Discard(),
	}
}

// admit is the whole in-process admission path: decode the AdmissionReview, run the handler (decode the pod,
// mutate, diff into a patch), encode the response review.
func admit(h *webhook.Handler, body []byte) ([]byte, error) {
	var in admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, err
	}
	resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: *in.Request})
	if err := resp.Complete(admission.Request{AdmissionRequest: *in.Request}); err != nil {
		return nil, err
	}
	out := admissionv1.AdmissionReview{TypeMeta: in.TypeMeta, Response: &resp.AdmissionResponse}
	return json.Marshal(&out)
}

// BenchmarkAdmission is the full path; the bar (docs/design.md#bars) is <= 3x BenchmarkDecodeEncodeBaseline.
func BenchmarkAdmission(b *testing.B) {
	h, body := benchHandler(), typicalReview()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := admit(h, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEncodeBaseline decodes the same AdmissionReview, including the Pod inside it, and re-encodes
// both: the unavoidable cost of any webhook that looks at the pod.
func BenchmarkDecodeEncodeBaseline(b *testing.B) {
	body := typicalReview()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil {
			b.Fatal(err)
		}
		var pod corev1.Pod
		if err := json.Unmarshal(in.Request.Object.Raw, &pod); err != nil {
			b.Fatal(err)
		}
		raw, err := json.Marshal(&pod)
		if err != nil {
			b.Fatal(err)
		}
		in.Request.Object.Raw = raw
		if _, err := json.Marshal(&in); err != nil {
			b.Fatal(err)
		}
	}
}
