package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/lastcall-dev/lastcall/internal/observer/summary"
)

// fakeAPI answers `kubectl get --raw` paths from a map and records what was asked.
type fakeAPI struct {
	bodies map[string]string
	asked  []string
}

func (f *fakeAPI) get(_ context.Context, path string) ([]byte, error) {
	f.asked = append(f.asked, path)
	b, ok := f.bodies[path]
	if !ok {
		return nil, errors.New("Error from server (NotFound): " + path)
	}
	return []byte(b), nil
}

func report(t *testing.T, leader bool, ws ...summary.Workload) string {
	t.Helper()
	b, err := json.Marshal(summary.Report{Leader: leader, Window: "6h0m0s", MaxSamples: 256, Workloads: ws})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	statusWorker = summary.Workload{Namespace: "shop", Kind: "Deployment", Name: "worker", Container: "worker", Profile: "celery",
		Shutdowns: 12, Killed: 3, Exited: 9, P50Seconds: 20, P99Seconds: 47, MaxSeconds: 47, GraceSeconds: 47}
	statusWeb = summary.Workload{Namespace: "shop", Kind: "Deployment", Name: "web", Container: "nginx", Profile: "nginx",
		Shutdowns: 12, Exited: 12, P50Seconds: 6, P99Seconds: 7, MaxSeconds: 7, GraceSeconds: 32}
	statusBatch = summary.Workload{Namespace: "batch", Kind: "StatefulSet", Name: "db", Container: "postgres", Profile: "postgres",
		Shutdowns: 2, Exited: 2, P50Seconds: 3, P99Seconds: 8, MaxSeconds: 8, GraceSeconds: 600}
)

const (
	leasePath = "/apis/coordination.k8s.io/v1/namespaces/lastcall-system/leases/lastcall-observer"
	podPath   = "/api/v1/namespaces/lastcall-system/pods/lastcall-6d5f8-abcde:8080/proxy/shutdowns"
	svcPath   = "/api/v1/namespaces/lastcall-system/services/lastcall-metrics:metrics/proxy/shutdowns"
)

func defaultStatusOptions() statusOptions {
	return statusOptions{lastcallNS: "lastcall-system", release: "lastcall", metricsPort: 8080, format: "text"}
}

func TestStatusAsksTheLeaseHolder(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{bodies: map[string]string{
		leasePath: `{"spec":{"holderIdentity":"lastcall-6d5f8-abcde_1f2e3d4c"}}`,
		podPath:   report(t, true, statusWeb, statusWorker, statusBatch),
		svcPath:   report(t, false),
	}}
	o := defaultStatusOptions()
	rep, err := fetchStatus(context.Background(), api.get, o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(api.asked, " ") != leasePath+" "+podPath {
		t.Fatalf("asked %v", api.asked)
	}
	var out, errb bytes.Buffer
	o.namespace = "shop"
	if code := printStatus(&out, &errb, rep, o); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := `NAMESPACE  WORKLOAD           CONTAINER  PROFILE  SHUTDOWNS  KILLED  P50  P99  GRACE  VERDICT
shop       Deployment/web     nginx      nginx    12         0       6s   7s   32s    fine
shop       Deployment/worker  worker     celery   12         3       20s  47s  47s    killed 3 of 12: raise lastcall.dev/drain-timeout.worker so the grace period exceeds 47s (try >= 1m34s)
(last 6h0m0s)
`
	if out.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	o.namespace, o.format = "", "json"
	if code := printStatus(&out, &errb, rep, o); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	var got struct {
		Workloads []StatusRow `json:"workloads"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Workloads) != 3 || got.Workloads[2].Verdict != "grace 10m0s but p99 needs 8s: could shorten rollouts" {
		t.Fatalf("json rows %+v", got.Workloads)
	}
}

func TestStatusFallsBackToTheService(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{bodies: map[string]string{svcPath: report(t, true, statusWeb)}}
	rep, err := fetchStatus(context.Background(), api.get, defaultStatusOptions())
	if err != nil || len(rep.Workloads) != 1 {
		t.Fatalf("report %+v, %v", rep, err)
	}
}

func TestStatusSaysWhyItCannotReachTheObserver(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{bodies: map[string]string{
		leasePath: `{"spec":{}}`,
		svcPath:   report(t, false),
	}}
	_, err := fetchStatus(context.Background(), api.get, defaultStatusOptions())
	if err == nil || !strings.Contains(err.Error(), "has no holder") {
		t.Fatalf("error %v", err)
	}
	api = &fakeAPI{bodies: map[string]string{}}
	_, err = fetchStatus(context.Background(), api.get, defaultStatusOptions())
	if err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("error %v", err)
	}
	api = &fakeAPI{bodies: map[string]string{svcPath: "<html>not json</html>"}}
	_, err = fetchStatus(context.Background(), api.get, defaultStatusOptions())
	if err == nil || !strings.Contains(err.Error(), "not an observer report") {
		t.Fatalf("error %v", err)
	}
}

func TestStatusFlags(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := Run([]string{"status", "-o", "yaml"}, nil, &out, &errb); code != ExitBadInput {
		t.Fatalf("exit %d for -o yaml", code)
	}
	// kubectl that is not there: a clear error, exit 1.
	errb.Reset()
	if code := Run([]string{"status", "--kubectl", "/nonexistent/kubectl"}, nil, &out, &errb); code != ExitFindings || !strings.Contains(errb.String(), "cannot reach lastcall's observer") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
