// Package e2e holds lastcall's end-to-end suites. They run against a real cluster and are guarded by the build
// tag e2e, so a plain `go test ./...` never starts one:
//
//	go test -tags e2e -count=1 -v ./test/e2e/            # local single-node cluster (hack/cluster/local.sh)
//	KIND=1 KIND_CLUSTER=kind go test -tags e2e ./test/e2e/  # an existing kind cluster
//	E2E_KUBECONFIG=~/.kube/config go test -tags e2e ./test/e2e/  # any cluster; images must already be there
//
// E2E_KEEP=1 leaves the cluster running afterwards. On failure every test writes pod specs, events, pod logs
// and the cluster's component logs to _output/e2e-diagnostics/<test>.
package e2e
