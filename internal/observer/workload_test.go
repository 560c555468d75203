package observer

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func owner(apiVersion, kind, name string, controller bool) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, Controller: &controller}}
}

func TestResolveWorkload(t *testing.T) {
	t.Parallel()
	hash := map[string]string{labelPodTemplateHash: "5d8f9c7b6"}
	cases := []struct {
		name    string
		owners  []metav1.OwnerReference
		labels  map[string]string
		want    Workload
		problem bool
	}{
		{"a Deployment's ReplicaSet resolves to the Deployment", owner("apps/v1", "ReplicaSet", "web-5d8f9c7b6", true), hash, Workload{KindDeployment, "web", "apps/v1"}, false},
		{"a Deployment name with dashes keeps them", owner("apps/v1", "ReplicaSet", "my-shop-api-5d8f9c7b6", true), hash, Workload{KindDeployment, "my-shop-api", "apps/v1"}, false},
		{"a bare ReplicaSet (no pod-template-hash) stays a ReplicaSet", owner("apps/v1", "ReplicaSet", "web-abc", true), nil, Workload{KindReplicaSet, "web-abc", "apps/v1"}, false},
		{"a hash that is not the ReplicaSet's suffix keeps the ReplicaSet and says why", owner("apps/v1", "ReplicaSet", "web-abc", true), hash, Workload{KindReplicaSet, "web-abc", "apps/v1"}, true},
		{"a ReplicaSet named only by the hash keeps the ReplicaSet", owner("apps/v1", "ReplicaSet", "-5d8f9c7b6", true), hash, Workload{KindReplicaSet, "-5d8f9c7b6", "apps/v1"}, true},
		{"a StatefulSet is itself", owner("apps/v1", "StatefulSet", "db", true), nil, Workload{KindStatefulSet, "db", "apps/v1"}, false},
		{"a DaemonSet is itself", owner("apps/v1", "DaemonSet", "agent", true), hash, Workload{KindDaemonSet, "agent", "apps/v1"}, false},
		{"a CronJob's Job resolves to the CronJob", owner("batch/v1", "Job", "nightly-29412345", true), nil, Workload{KindCronJob, "nightly", "batch/v1"}, false},
		{"a Job with a short numeric suffix stays a Job", owner("batch/v1", "Job", "migrate-42", true), nil, Workload{KindJob, "migrate-42", "batch/v1"}, false},
		{"a Job without a numeric suffix stays a Job", owner("batch/v1", "Job", "migrate", true), nil, Workload{KindJob, "migrate", "batch/v1"}, false},
		{"a Job whose suffix has a letter stays a Job", owner("batch/v1", "Job", "migrate-2941234x", true), nil, Workload{KindJob, "migrate-2941234x", "batch/v1"}, false},
		{"no owner is the pod itself", nil, nil, Workload{KindPod, "web-5d8f9c7b6-abcde", "v1"}, false},
		{"owners without a controller are the pod itself, with a note", owner("v1", "ConfigMap", "x", false), nil, Workload{KindPod, "web-5d8f9c7b6-abcde", "v1"}, true},
		{"another controller's kind is kept", owner("argoproj.io/v1alpha1", "Rollout", "web", true), hash, Workload{"Rollout", "web", "argoproj.io/v1alpha1"}, false},
		{"a ReplicaSet of another group is not taken for a Deployment's", owner("example.com/v1", "ReplicaSet", "web-5d8f9c7b6", true), hash, Workload{KindReplicaSet, "web-5d8f9c7b6", "example.com/v1"}, false},
		{"a controller reference without a name is unknown", owner("apps/v1", "ReplicaSet", "", true), hash, Workload{Kind: KindUnknown}, true},
		{"a controller reference without a kind is unknown", owner("apps/v1", "", "web", true), nil, Workload{Kind: KindUnknown}, true},
		{"an apiVersion without a group is handled", owner("v1", "ReplicaSet", "web-5d8f9c7b6", true), hash, Workload{KindReplicaSet, "web-5d8f9c7b6", "v1"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, problem := ResolveWorkload("web-5d8f9c7b6-abcde", c.owners, c.labels)
			if got != c.want || (problem != "") != c.problem {
				t.Fatalf("got %+v, problem %q; want %+v, problem %v", got, problem, c.want, c.problem)
			}
		})
	}
}

func TestParseRecord(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		want    map[string]string
		wantErr bool
	}{
		{"web=nginx,php=php-fpm", map[string]string{"web": "nginx", "php": "php-fpm"}, false},
		{" web = nginx ", map[string]string{"web": "nginx"}, false},
		{"", nil, false},
		{"web=nginx,garbage", map[string]string{"web": "nginx"}, true},
		{"=nginx,php=", map[string]string{}, true},
		{"web=nginx=x", map[string]string{}, true},
		{",,,", map[string]string{}, true},
	}
	for _, c := range cases {
		got, err := parseRecord(c.in)
		if (err != nil) != c.wantErr || len(got) != len(c.want) {
			t.Fatalf("parseRecord(%q) = %v, %v; want %v, error %v", c.in, got, err, c.want, c.wantErr)
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Fatalf("parseRecord(%q)[%s] = %q, want %q", c.in, k, got[k], v)
			}
		}
	}
	if p := profileOf(map[string]string{"web": "nginx"}, false, "web"); p != "nginx" {
		t.Fatalf("profileOf recorded container = %q", p)
	}
	if p := profileOf(map[string]string{"web": "nginx"}, false, "other"); p != ProfileNone {
		t.Fatalf("profileOf container missing from a good record = %q, want none", p)
	}
	if p := profileOf(map[string]string{"web": "nginx"}, true, "other"); p != ProfileUnknown {
		t.Fatalf("profileOf container missing from a bad record = %q, want unknown", p)
	}
}
