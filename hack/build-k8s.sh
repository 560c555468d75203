#!/usr/bin/env bash
# Builds the Kubernetes control plane, kubelet, kubectl, etcd and helm from source into $LASTCALL_CACHE/bin.
# Idempotent: a stamp keyed by the pinned versions and the Go version makes a second run instant.
# Why from source: these machines reach the Go module proxy but no release download or image registry.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
HELM_VERSION=v4.3.1
bin=$LASTCALL_CACHE/bin
mkdir -p "$bin"
gover=$(go env GOVERSION)

build_k8s() {
  local stamp=$bin/.k8s-$K8S_VERSION-$gover
  if [ -f "$stamp" ] && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubelet" ]; then return; fi
  step "building Kubernetes $K8S_VERSION (kube-apiserver, controller-manager, scheduler, kubelet, kubectl); cold: 6-20 min on 2 cores"
  local minor=${K8S_VERSION#v1.}
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*} -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  (cd "$here/build/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags="$ld" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl)
  touch "$stamp"
}

build_etcd() {
  local stamp=$bin/.etcd-$ETCD_VERSION-$gover
  if [ -f "$stamp" ] && [ -x "$bin/etcd" ]; then return; fi
  step "building etcd $ETCD_VERSION (~1 min)"
  (cd "$here/build/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
  touch "$stamp"
}

build_helm() {
  local stamp=$bin/.helm-$HELM_VERSION-$gover
  if [ -f "$stamp" ] && [ -x "$bin/helm" ]; then return; fi
  step "building helm $HELM_VERSION (~2 min)"
  CGO_ENABLED=0 GOBIN=$bin go install -trimpath -ldflags="-s -w" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  touch "$stamp"
}

what=${1:-all}
case $what in
  envtest) build_etcd; build_k8s ;;   # envtest needs kube-apiserver + etcd; k8s builds them all in one go
  helm) build_helm ;;
  all) build_etcd; build_k8s; build_helm ;;
  *) echo "usage: $0 [all|envtest|helm]" >&2; exit 2 ;;
esac
