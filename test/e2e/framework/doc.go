// Package framework runs lastcall's end-to-end tests against a cluster provider: `local` (default, the
// single-node cluster of hack/cluster/local.sh), `kind` (KIND=1, an existing kind cluster named KIND_CLUSTER)
// or `existing` (E2E_KUBECONFIG). Everything but this file is built only with the build tag e2e.
package framework
