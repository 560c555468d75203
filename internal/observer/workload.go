package observer

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Workload is what a pod belongs to, resolved from its owner references without API calls: the pod is gone
// by the time its shutdown is recorded, and a GET per pod would cost more than the pod watch itself.
type Workload struct {
	// Kind is Deployment, ReplicaSet, StatefulSet, DaemonSet, CronJob, Job, Pod (no controller), another
	// controller's kind as its owner reference states it, or "unknown".
	Kind string `json:"kind"`
	Name string `json:"name"`
	// APIVersion is the group/version of Kind, for the event's involvedObject ("" when unknown).
	APIVersion string `json:"-"`
}

// Kinds the resolution knows.
const (
	KindDeployment  = "Deployment"
	KindReplicaSet  = "ReplicaSet"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindJob         = "Job"
	KindCronJob     = "CronJob"
	KindPod         = "Pod"
	KindUnknown     = "unknown"
)

// labelPodTemplateHash is the label the Deployment controller puts on its ReplicaSets' pods; the ReplicaSet's
// name is "<deployment>-<hash>".
const labelPodTemplateHash = "pod-template-hash"

// minCronJobSuffix is the shortest numeric suffix taken for a CronJob's: the CronJob controller names its Jobs
// "<cronjob>-<scheduled time in minutes since the epoch>", 8 digits since 1989 and until 2160.
const minCronJobSuffix = 8

// ResolveWorkload resolves the workload of a pod from its controller owner reference (and, for a ReplicaSet,
// its pod-template-hash label). problem is non-empty when the references are malformed; the workload is then
// the best that can be said (Kind "unknown" when nothing can).
//
//	owner                           workload
//	none                            Pod <pod name>
//	ReplicaSet web-5d8f9 + hash     Deployment web (the name minus "-<pod-template-hash>")
//	ReplicaSet without hash label   ReplicaSet (a bare ReplicaSet)
//	StatefulSet / DaemonSet         itself
//	Job nightly-29012345            CronJob nightly (a numeric suffix of 8+ digits, the CronJob controller's)
//	Job migrate                     Job migrate
//	any other kind                  that kind and name (e.g. an Argo Rollout's ReplicaSet is still a ReplicaSet)
func ResolveWorkload(podName string, owners []metav1.OwnerReference, labels map[string]string) (w Workload, problem string) {
	var ref *metav1.OwnerReference
	for i := range owners {
		if owners[i].Controller != nil && *owners[i].Controller {
			ref = &owners[i]
			break
		}
	}
	if ref == nil {
		if len(owners) > 0 {
			// Owners but no controller (e.g. garbage-collection owners only): the pod is its own workload.
			problem = fmt.Sprintf("owner references without controller: true (first: %s %q); using the pod", owners[0].Kind, owners[0].Name)
		}
		return Workload{Kind: KindPod, Name: podName, APIVersion: "v1"}, problem
	}
	if ref.Kind == "" || ref.Name == "" {
		return Workload{Kind: KindUnknown}, fmt.Sprintf("controller owner reference with kind %q and name %q", ref.Kind, ref.Name)
	}
	group := ref.APIVersion
	if i := strings.IndexByte(group, '/'); i >= 0 {
		group = group[:i]
	} else {
		group = ""
	}
	switch {
	case ref.Kind == KindReplicaSet && group == "apps":
		hash := labels[labelPodTemplateHash]
		if hash == "" {
			return Workload{Kind: KindReplicaSet, Name: ref.Name, APIVersion: ref.APIVersion}, ""
		}
		if d, ok := strings.CutSuffix(ref.Name, "-"+hash); ok && d != "" {
			return Workload{Kind: KindDeployment, Name: d, APIVersion: "apps/v1"}, ""
		}
		return Workload{Kind: KindReplicaSet, Name: ref.Name, APIVersion: ref.APIVersion},
			fmt.Sprintf("ReplicaSet %q does not end in -<pod-template-hash %q>; using the ReplicaSet", ref.Name, hash)
	case ref.Kind == KindJob && group == "batch":
		if i := strings.LastIndexByte(ref.Name, '-'); i > 0 && len(ref.Name)-i-1 >= minCronJobSuffix && allDigits(ref.Name[i+1:]) {
			return Workload{Kind: KindCronJob, Name: ref.Name[:i], APIVersion: "batch/v1"}, ""
		}
		return Workload{Kind: KindJob, Name: ref.Name, APIVersion: ref.APIVersion}, ""
	default:
		return Workload{Kind: ref.Kind, Name: ref.Name, APIVersion: ref.APIVersion}, ""
	}
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
