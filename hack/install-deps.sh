#!/usr/bin/env bash
# Installs the Debian packages the tests and the local cluster need. Idempotent and quick when all are present.
# nginx-light + php8.2-fpm and the servers of the other built-in profiles (apache2, haproxy, gunicorn,
# python3-uvicorn, celery + python3-redis + redis-server, ruby-sidekiq, postgresql): the shim's real-server
# tests; containerd, runc, CNI plugins, iptables: the local cluster; mmdebstrap: the Debian root filesystem of
# the test images. The Python servers run under Debian's /usr/bin/python3 (python3 on PATH may be pyenv's).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
pkgs=(nginx-light php8.2-fpm apache2 haproxy gunicorn python3-uvicorn celery python3-celery python3-redis
  redis-server redis-tools ruby-sidekiq postgresql
  containerd runc containernetworking-plugins mmdebstrap iptables openssl bc curl iproute2 util-linux procps
  ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the packages' services from starting: the tests start their own instances.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these on install on systems with an init; make sure none listens where tests want to.
for s in nginx php8.2-fpm containerd apache2 haproxy redis-server postgresql; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q "$s" 2>/dev/null; then systemctl stop "$s" || true; fi
done
