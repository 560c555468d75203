#!/usr/bin/env bash
# Builds container image tarballs without Docker or a registry (hack/tools/mkimage, go-containerregistry).
#
#   hack/images.sh [all|base|testapp|lastcall|cert-manager|traefik]
#
#   base      $LASTCALL_CACHE/images/pause.tar       local.test/pause:3.10      (sandbox image; static pause binary)
#             $LASTCALL_CACHE/images/debian-web.tar  local.test/debian-web:1    (bookworm minbase + nginx-light + php8.2-fpm)
#             $LASTCALL_CACHE/images/debian-worker.tar local.test/debian-worker:1 (bookworm minbase + celery + redis)
#   testapp   _output/images/testapp.tar             local.test/testapp:1       (only the static test/testapp binary)
#   lastcall  _output/images/lastcall-webhook.tar    ghcr.io/lastcall-dev/lastcall-webhook:$VERSION
#             _output/images/lastcall-shim.tar       ghcr.io/lastcall-dev/lastcall-shim:$VERSION
#             (from bin/lastcall-webhook and bin/lastcall-shim: run `make build` first)
#   cert-manager $LASTCALL_CACHE/images/cert-manager-{controller,cainjector,webhook}.tar
#             local.test/cert-manager-{controller,cainjector,webhook}:$CERT_MANAGER_VERSION
#             (from hack/build-cert-manager.sh, which this runs; instant when built)
#   traefik   _output/images/traefik.tar          local.test/traefik:1       (the ingress of the e2e suite and the demo:
#             only $LASTCALL_CACHE/bin/traefik, built from source by hack/build-traefik.sh, which this target runs)
#   all       all of the above
#
# Layers are zstd-compressed: containerd unpacks them about twice as fast as gzip (6 s instead of 13 s for
# debian-web here). Every image is rebuilt only when its inputs change (a key file next to the tarball); a second run is instant.
# Load them with `hack/cluster/local.sh load FILE.tar` (or `ctr -n k8s.io images import`, `kind load image-archive`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

VERSION=${VERSION:-v0.1.0-dev}
DEBIAN_SUITE=bookworm
DEBIAN_PACKAGES=nginx-light,php8.2-fpm
base_dir=$LASTCALL_CACHE/images
out_dir=$root/_output/images
bin_dir=${LASTCALL_BIN_DIR:-$root/bin}   # where `make build` puts lastcall-webhook and lastcall-shim
tools=$LASTCALL_CACHE/tools
src_label=org.opencontainers.image.source=https://github.com/lastcall-dev/lastcall

hashof() { cat "$@" | sha256sum | cut -c1-32; }
# uptodate TAR KEY: the tarball exists and was built from inputs with this key
uptodate() { [ -f "$1" ] && [ "$(cat "$1.key" 2>/dev/null)" = "$2" ]; }
done_key() { echo "$2" > "$1.key"; }
tools_key() { ls "$tools"/.tools-* 2>/dev/null | xargs -n1 basename; }

build_tools() { "$here/tools/build.sh"; }

image_pause() {
  local tar=$base_dir/pause.tar key
  key=$( (tools_key; echo local.test/pause:3.10) | hashof)
  uptodate "$tar" "$key" && return
  step "image local.test/pause:3.10"
  "$tools/mkimage" -zstd -t local.test/pause:3.10 -o "$tar" -file "$tools/pause:/pause:0755" \
    -entrypoint /pause -user 65535:65535 -label "$src_label"
  done_key "$tar" "$key"
}

# A Debian root filesystem for nginx + php-fpm, docs, man pages and locales left out. ~76 s and ~100 MB, once.
rootfs_debian_web() {
  local tgz=$base_dir/debian-web-rootfs.tar.gz key
  key=$( (echo "$DEBIAN_SUITE $DEBIAN_PACKAGES v2"; dpkg-query -W -f='${Version}' mmdebstrap 2>/dev/null) | hashof)
  uptodate "$tgz" "$key" && return
  command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing: run hack/install-deps.sh" >&2; exit 1; }
  step "Debian $DEBIAN_SUITE rootfs with $DEBIAN_PACKAGES (mmdebstrap, ~80 s once)"
  mmdebstrap --quiet --variant=minbase --include="$DEBIAN_PACKAGES" --format=tar \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' --dpkgopt='path-exclude=/usr/share/linda/*' \
    "$DEBIAN_SUITE" - | gzip -1 > "$tgz.tmp"
  mv "$tgz.tmp" "$tgz"
  done_key "$tgz" "$key"
}

# A Debian root filesystem for a real Celery worker and its Redis (the e2e worker scenario). ~100 s, once.
WORKER_PACKAGES=celery,python3-celery,python3-redis,redis-server
rootfs_debian_worker() {
  local tgz=$base_dir/debian-worker-rootfs.tar.gz key
  key=$( (echo "$DEBIAN_SUITE $WORKER_PACKAGES v1"; dpkg-query -W -f='${Version}' mmdebstrap 2>/dev/null) | hashof)
  uptodate "$tgz" "$key" && return
  command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing: run hack/install-deps.sh" >&2; exit 1; }
  step "Debian $DEBIAN_SUITE rootfs with $WORKER_PACKAGES (mmdebstrap, ~100 s once)"
  mmdebstrap --quiet --variant=minbase --include="$WORKER_PACKAGES" --format=tar \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    "$DEBIAN_SUITE" - | gzip -1 > "$tgz.tmp"
  mv "$tgz.tmp" "$tgz"
  done_key "$tgz" "$key"
}

image_debian_worker() {
  rootfs_debian_worker
  local tar=$base_dir/debian-worker.tar key
  key=$( (tools_key; cat "$base_dir/debian-worker-rootfs.tar.gz.key"; echo local.test/debian-worker:1) | hashof)
  uptodate "$tar" "$key" && return
  step "image local.test/debian-worker:1"
  "$tools/mkimage" -zstd -t local.test/debian-worker:1 -o "$tar" -layer "$base_dir/debian-worker-rootfs.tar.gz" \
    -cmd /bin/bash -label "$src_label"
  done_key "$tar" "$key"
}

image_debian_web() {
  rootfs_debian_web
  local tar=$base_dir/debian-web.tar key
  key=$( (tools_key; cat "$base_dir/debian-web-rootfs.tar.gz.key"; echo local.test/debian-web:1) | hashof)
  uptodate "$tar" "$key" && return
  step "image local.test/debian-web:1"
  "$tools/mkimage" -zstd -t local.test/debian-web:1 -o "$tar" -layer "$base_dir/debian-web-rootfs.tar.gz" \
    -cmd /bin/bash -label "$src_label"
  done_key "$tar" "$key"
}

image_testapp() {
  local bin=$root/_output/bin/testapp tar=$out_dir/testapp.tar key
  mkdir -p "$root/_output/bin"
  (cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$bin" ./test/testapp)
  key=$( (tools_key; sha256sum < "$bin"; echo local.test/testapp:1) | hashof)
  uptodate "$tar" "$key" && return
  step "image local.test/testapp:1"
  "$tools/mkimage" -zstd -t local.test/testapp:1 -o "$tar" -file "$bin:/testapp:0755" -entrypoint /testapp \
    -user 65532:65532 -label "$src_label"
  done_key "$tar" "$key"
}

# image_lastcall NAME: ghcr.io/lastcall-dev/NAME:$VERSION from bin/NAME, non-root, no shell.
image_lastcall() {
  local name=$1 bin=$bin_dir/$1 tar=$out_dir/$1.tar key ref=ghcr.io/lastcall-dev/$1:$VERSION
  if [ ! -x "$bin" ]; then
    echo "images.sh: $bin does not exist: build the binaries first (make build)" >&2
    exit 1
  fi
  key=$( (tools_key; sha256sum < "$bin"; echo "$ref") | hashof)
  uptodate "$tar" "$key" && return
  step "image $ref"
  "$tools/mkimage" -zstd -t "$ref" -o "$tar" -file "$bin:/usr/local/bin/$name:0755" -entrypoint "/usr/local/bin/$name" \
    -user 65532:65532 -label "$src_label" -label "org.opencontainers.image.version=$VERSION"
  done_key "$tar" "$key"
}

# cert-manager's three components, each a static binary as a non-root image (the chart runs them with
# runAsNonRoot). The binaries come from hack/build-cert-manager.sh (cached by its stamp).
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-v1.21.2}
image_cert_manager() {
  CERT_MANAGER_VERSION=$CERT_MANAGER_VERSION "$here/build-cert-manager.sh"
  local c bin tar key ref
  for c in controller cainjector webhook; do
    bin=$LASTCALL_CACHE/bin/cert-manager/$c tar=$base_dir/cert-manager-$c.tar ref=local.test/cert-manager-$c:$CERT_MANAGER_VERSION
    key=$( (tools_key; sha256sum < "$bin"; echo "$ref") | hashof)
    uptodate "$tar" "$key" && continue
    step "image $ref"
    "$tools/mkimage" -zstd -t "$ref" -o "$tar" -file "$bin:/app/cmd/$c:0755" -entrypoint "/app/cmd/$c" \
      -user 65532:65532 -label "$src_label"
    done_key "$tar" "$key"
  done
}

# image_traefik: Traefik (hack/build-traefik.sh, instant when built) as the only file, non-root, no shell.
image_traefik() {
  "$here/build-traefik.sh"
  local bin=$LASTCALL_CACHE/bin/traefik tar=$out_dir/traefik.tar key version
  version=$(sed -n 's/^TRAEFIK_VERSION=//p' "$here/build-traefik.sh")
  key=$( (tools_key; sha256sum < "$bin"; echo "local.test/traefik:1 $version") | hashof)
  uptodate "$tar" "$key" && return
  step "image local.test/traefik:1 (Traefik $version)"
  "$tools/mkimage" -zstd -t local.test/traefik:1 -o "$tar" -file "$bin:/usr/local/bin/traefik:0755" \
    -entrypoint /usr/local/bin/traefik -user 65532:65532 -label "$src_label" \
    -label "org.opencontainers.image.version=$version"
  done_key "$tar" "$key"
}

mkdir -p "$base_dir" "$out_dir"
what=${1:-all}
case $what in
  base) build_tools; image_pause; image_debian_web; image_debian_worker ;;
  testapp) build_tools; image_testapp ;;
  lastcall) build_tools; image_lastcall lastcall-webhook; image_lastcall lastcall-shim ;;
  cert-manager) build_tools; image_cert_manager ;;
  traefik) build_tools; image_traefik ;;
  all) build_tools; image_pause; image_debian_web; image_debian_worker; image_testapp
       image_lastcall lastcall-webhook; image_lastcall lastcall-shim; image_cert_manager; image_traefik ;;
  *) echo "usage: $0 [all|base|testapp|lastcall|cert-manager|traefik]" >&2; exit 2 ;;
esac
