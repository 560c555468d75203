#!/usr/bin/env bash
# Runs staticcheck (honnef.co/go/tools) over the module, the e2e suite (build tag e2e) and hack/tools, with
# staticcheck's default checks. The binary is installed once per version and Go version into
# $LASTCALL_CACHE/bin, like controller-gen in hack/generate.sh; its analysis cache makes a warm run a few seconds
# of CPU.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

# 2026.2.2: the release that knows Go 1.26.
STATICCHECK_VERSION=v0.8.2
bin=$LASTCALL_CACHE/bin
mkdir -p "$bin"
sc=$bin/staticcheck
stamp=$bin/.staticcheck-$STATICCHECK_VERSION-$(go env GOVERSION)
if [ ! -f "$stamp" ] || [ ! -x "$sc" ]; then
  step "installing staticcheck $STATICCHECK_VERSION"
  GOBIN=$bin CGO_ENABLED=0 go install -trimpath "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
  rm -f "$bin"/.staticcheck-*
  touch "$stamp"
fi

cd "$root"
"$sc" ./...
"$sc" -tags e2e ./test/e2e/...
(cd hack/tools && "$sc" ./...)
