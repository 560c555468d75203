# Shared helpers for hack/ scripts. Sourced, not executed.
# LASTCALL_CACHE holds everything that is expensive to rebuild (binaries, images, root filesystems). It lives
# outside the clone so a clean checkout on the same machine reuses it; every entry is keyed by a stamp.
export LASTCALL_CACHE=${LASTCALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lastcall}
step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
