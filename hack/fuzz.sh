#!/usr/bin/env bash
# Runs every fuzz target for a short time (default 10s each). Go fuzzes one target per invocation.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
for pkg in ./pkg/mutate ./pkg/policy ./pkg/webhook ./internal/cli ./internal/observer; do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    echo "==> fuzz $pkg $target ($t)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$t" "$pkg"
  done
done
