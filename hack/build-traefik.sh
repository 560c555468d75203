#!/usr/bin/env bash
# Builds Traefik (the ingress controller of the end-to-end suite and the demo) from its module source into
# $LASTCALL_CACHE/bin/traefik. Idempotent: a stamp keyed by the Traefik and Go versions makes a second run instant.
#
# Why this way: Traefik's go.mod has replace directives (one to a path inside its own module), so
# `go install github.com/traefik/traefik/v3/cmd/traefik@VERSION` is refused. The module proxy serves the source,
# so we download it, copy it somewhere writable and build ./cmd/traefik inside it, where its replaces apply.
# Cold: 34 min measured on 2 cores shared with the Kubernetes build and other jobs (not measured alone; the module
# has many dependencies); warm: instant.
# Why v3.6.12 and not v3.7.x: v3.7's module zip lacks the nested module its replace points at
# (pkg/config/dynamic/ext, a directory with its own go.mod, which module zips leave out), and the module proxy
# answers 403 for several of its dependencies (lego v5's DNS providers, containous/go-http-auth).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

TRAEFIK_VERSION=v3.6.12
bin=$LASTCALL_CACHE/bin
src=$LASTCALL_CACHE/build/traefik-$TRAEFIK_VERSION
gover=$(go env GOVERSION)
stamp=$bin/.traefik-$TRAEFIK_VERSION-$gover
mkdir -p "$bin"

if [ -f "$stamp" ] && [ -x "$bin/traefik" ]; then exit 0; fi
step "building Traefik $TRAEFIK_VERSION from its module source; cold: 10-35 min on 2 cores"

dir=$(go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "build-traefik.sh: go mod download gave no source directory for traefik $TRAEFIK_VERSION" >&2; exit 1; }
if [ ! -f "$src/go.mod" ]; then
  rm -rf "$src.tmp"
  mkdir -p "$(dirname "$src")"
  cp -r "$dir" "$src.tmp"
  chmod -R u+w "$src.tmp"
  mv "$src.tmp" "$src"
fi
# The web UI is embedded from webui/static (//go:embed static). The module zip carries only a placeholder file
# there, which satisfies the pattern; should a release ship none, an empty placeholder (in the build copy only)
# keeps the embed valid. The dashboard is not used by lastcall's tests.
if [ -z "$(ls -A "$src/webui/static" 2>/dev/null)" ]; then
  mkdir -p "$src/webui/static"
  echo "placeholder: the lastcall build does not ship Traefik's web UI" > "$src/webui/static/README.md"
fi
ld="-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION -X github.com/traefik/traefik/v3/pkg/version.Codename=lastcall-build"
(cd "$src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="$ld" -o "$bin/traefik.tmp" ./cmd/traefik)
mv "$bin/traefik.tmp" "$bin/traefik"
touch "$stamp"
