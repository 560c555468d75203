#!/usr/bin/env bash
# Builds the hack tools (mkimage, crirm, pause) into $LASTCALL_CACHE/tools. Idempotent: a stamp keyed by a hash
# of this module's sources and the Go version makes a second run instant. Prints nothing when up to date.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

out=$LASTCALL_CACHE/tools
mkdir -p "$out"
key=$( (cd "$here" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum -o -name build.sh \) -print0 |
  sort -z | xargs -0 sha256sum; go env GOVERSION) | sha256sum | cut -c1-16)
stamp=$out/.tools-$key
if [ -f "$stamp" ] && [ -x "$out/mkimage" ] && [ -x "$out/crirm" ] && [ -x "$out/pause" ]; then exit 0; fi
step "building hack tools (mkimage, crirm, pause)"
(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out/" ./mkimage ./crirm ./pause)
rm -f "$out"/.tools-*
touch "$stamp"
