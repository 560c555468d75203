#!/usr/bin/env bash
# Builds cert-manager's controller, cainjector and webhook from its module source into
# $LASTCALL_CACHE/bin/cert-manager, and keeps its Helm chart next to them ($LASTCALL_CACHE/cert-manager/chart).
# Idempotent: a stamp keyed by the cert-manager version, a hash of hack/build/cert-manager and the Go version
# makes a second run instant.
#
# Why not `go install`: cert-manager's commands are nested modules the module proxy does not serve, and one of
# its dependencies (Venafi's client) is not served either. What is served is the main module: its controllers,
# injector and webhook server. hack/build/cert-manager holds three small mains over them (CA and self-signed
# issuers only; see controller/main.go); they are copied into a writable copy of the module source and built
# there, since they use its internal packages. Cold: ~10 min on 2 shared cores (4.5 min user CPU).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-v1.21.2}
mod=github.com/cert-manager/cert-manager
out=$LASTCALL_CACHE/bin/cert-manager
chart=$LASTCALL_CACHE/cert-manager/chart
src=$LASTCALL_CACHE/build/cert-manager-$CERT_MANAGER_VERSION
key=$( (echo "$CERT_MANAGER_VERSION"; go env GOVERSION; cd "$here/build/cert-manager" && find . -type f -print0 |
  sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
stamp=$out/.cert-manager-$key
if [ -f "$stamp" ] && [ -x "$out/controller" ] && [ -x "$out/cainjector" ] && [ -x "$out/webhook" ] &&
  [ -f "$chart/Chart.yaml" ]; then
  exit 0
fi
step "building cert-manager $CERT_MANAGER_VERSION (controller, cainjector, webhook); cold: ~8-10 min on 2 shared cores (5.5 min of CPU)"
dir=$(go mod download -json "$mod@$CERT_MANAGER_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "build-cert-manager.sh: go mod download $mod@$CERT_MANAGER_VERSION gave no source dir" >&2; exit 1; }
rm -rf "$src"
mkdir -p "$(dirname "$src")" "$out"
cp -r "$dir" "$src"
chmod -R u+w "$src"
mkdir -p "$src/cmd-lastcall"
for c in controller cainjector webhook; do cp -r "$here/build/cert-manager/$c" "$src/cmd-lastcall/"; done
(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X $mod/pkg/util.AppVersion=$CERT_MANAGER_VERSION" \
  -o "$out/" ./cmd-lastcall/controller ./cmd-lastcall/cainjector ./cmd-lastcall/webhook)
rm -rf "$chart"
mkdir -p "$(dirname "$chart")"
cp -r "$src/deploy/charts/cert-manager" "$chart"
# The release tool stamps the chart's versions; do the same so the chart labels the objects with the real one.
sed -i "s/^version: v0.0.0$/version: $CERT_MANAGER_VERSION/; s/^appVersion: v0.0.0$/appVersion: $CERT_MANAGER_VERSION/" "$chart/Chart.yaml"
rm -f "$out"/.cert-manager-*
touch "$stamp"
