#!/usr/bin/env bash
# The local single-node Kubernetes cluster for lastcall's end-to-end tests: containerd + runc (Debian), etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kubelet built from source by hack/build-k8s.sh,
# CNI bridge networking, no kube-proxy, no cluster DNS.
#
#   hack/cluster/local.sh up              start (cleans up first), wait for node Ready + default ServiceAccount
#   hack/cluster/local.sh down            stop everything, then cleanup
#   hack/cluster/local.sh cleanup         leave the machine as found (also after a killed run)
#   hack/cluster/local.sh status          components, PIDs, RSS, node (exit 0 all running, 1 none, 3 some)
#   hack/cluster/local.sh kubeconfig      print the admin kubeconfig path
#   hack/cluster/local.sh load FILE.tar   import an image tarball into containerd's k8s.io namespace
#   hack/cluster/local.sh logs DIR        copy every component log (and pod logs) into DIR
#   hack/cluster/local.sh purge           cleanup, then remove the state dir entirely
#
# State: ${LASTCALL_CLUSTER_DIR:-/var/tmp/lastcall-cluster} (never inside the clone). Components are stopped by
# the PIDs this script recorded (PID + start time), never by name; containerd shims by their -address (this
# cluster's socket under the state dir); after a killed run, pod processes by their kubepods cgroup.
# One cluster per host (flock + port check).
# Env: LASTCALL_FEATURE_GATES (e.g. ContainerStopSignals=true) is passed to the apiserver, controller-manager,
#      scheduler and kubelet; LASTCALL_CLUSTER_TIMEOUT (seconds, default 90) bounds each readiness wait;
#      LASTCALL_CLUSTER_TMPFS=0 keeps the runtime data on disk instead of a tmpfs (LASTCALL_CLUSTER_TMPFS_SIZE, 8g).
set -euo pipefail
[ "${LASTCALL_TRACE:-}" = 1 ] && { PS4='+ $EPOCHREALTIME '; set -x; }
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

DIR=${LASTCALL_CLUSTER_DIR:-/var/tmp/lastcall-cluster}
case $DIR in /*) ;; *) echo "LASTCALL_CLUSTER_DIR must be absolute" >&2; exit 2 ;; esac
BIN=$LASTCALL_CACHE/bin
TOOLS=$LASTCALL_CACHE/tools
NODE=lastcall-node
POD_CIDR=10.244.0.0/24
POD_GW=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
BRIDGE=cr0
RUN=$DIR/run
PKI=$DIR/pki
LOGS=$DIR/logs
PIDS=$RUN/pids
SOCK=$RUN/containerd/containerd.sock
KUBECONFIG_PATH=$DIR/kubeconfig
TIMEOUT=${LASTCALL_CLUSTER_TIMEOUT:-90}
FEATURE_GATES=${LASTCALL_FEATURE_GATES:-}
# host settings the kubelet (and the CNI bridge plugin) change and never restore
SYSCTLS="kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward"
# fixed host paths the kubelet and CNI create whatever their configuration; removed at cleanup when empty
HOST_DIRS="/var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni/results /var/lib/cni/networks /var/lib/cni /run/containerd/s /run/containerd"
COMPONENTS="containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet"

T_INVOKE=$(date +%s.%N)
T_START=$T_INVOKE
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

lock() { # serialize operations on this host's cluster
  mkdir -p "$DIR"
  exec 9>"$DIR/cluster.lock"
  flock -w 120 9 || die "another local.sh operation holds $DIR/cluster.lock"
}

node_ip() {
  ip -4 -o route get 1.1.1.1 2>/dev/null | awk '{for(i=1;i<NF;i++) if($i=="src"){print $(i+1); exit}}' | grep . ||
    ip -4 -o addr show scope global | awk '{split($4,a,"/"); print a[1]; exit}'
}

# --- processes: recorded as "PID STARTTIME" so a recycled PID is never killed -------------------------------
starttime() { awk '{sub(/^.*\) /,""); print $20}' "/proc/$1/stat" 2>/dev/null; }
# alive PID [STARTTIME]: running and not a zombie (this VM's PID 1 reaps orphans late; kill -0 succeeds on zombies)
alive() {
  local st
  st=$(awk '{sub(/^.*\) /,""); print $1, $20}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st%% *}" != Z ] && { [ -z "${2:-}" ] || [ "${st#* }" = "$2" ]; }
}
recorded() { # name -> "pid starttime" if recorded and alive
  local f=$PIDS/$1 pid st
  [ -f "$f" ] || return 1
  read -r pid st < "$f" || return 1
  alive "$pid" "$st" && echo "$pid $st"
}
start() { # name cmd... : detached (own session), stdin from /dev/null, output to $LOGS/name.log, lock fd closed
  local name=$1; shift
  setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 9>&- &
  local pid=$!
  echo "$pid $(starttime "$pid")" > "$PIDS/$name"
}
# wait_for DESC COMPONENT CMD...: poll CMD every 0.2 s; fail early if COMPONENT died, with the tail of its log
wait_for() {
  local desc=$1 comp=$2; shift 2
  local end=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$comp" ] && ! recorded "$comp" >/dev/null; then
      log "$comp exited while waiting for $desc; last lines of $LOGS/$comp.log:"
      tail -n 25 "$LOGS/$comp.log" >&2 || true
      exit 1
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      log "timed out after ${TIMEOUT}s waiting for $desc; last lines of $LOGS/$comp.log:"
      [ -n "$comp" ] && tail -n 25 "$LOGS/$comp.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  log "ready: $desc ($(since "$T_START") s)"
}
stop_one() { # name [timeout]: SIGTERM, wait, SIGKILL
  local name=$1 t=${2:-30} pid st end
  if read -r pid st < <(recorded "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    end=$(( $(date +%s) + t ))
    while alive "$pid" "$st"; do
      if [ "$(date +%s)" -ge "$end" ]; then
        log "$name did not stop in ${t}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.05
    done
    log "stopped $name"
  fi
  rm -f "$PIDS/$name"
}

# kubectl with its discovery cache in the state dir, not ~/.kube
kc() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" --cache-dir "$DIR/kubectl-cache" "$@"; }

# --- up ---------------------------------------------------------------------------------------------------------
check_prereqs() {
  local missing=
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    [ -x "$BIN/$b" ] || missing="$missing $b"
  done
  [ -z "$missing" ] || die "missing in $BIN:$missing -- run hack/build-k8s.sh all (make deps)"
  for b in containerd containerd-shim-runc-v2 runc ctr iptables openssl curl; do
    command -v "$b" >/dev/null || die "$b not installed -- run hack/install-deps.sh"
  done
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || die "CNI plugins missing in /usr/lib/cni -- run hack/install-deps.sh"
  [ -f "$LASTCALL_CACHE/images/pause.tar" ] && [ -x "$TOOLS/crirm" ] || die "pause image or crirm missing -- run hack/images.sh base"
  [ "$(id -u)" = 0 ] || die "the local cluster needs root"
}

render() { # template output
  sed -e "s|@DIR@|$DIR|g" -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@POD_GW@|$POD_GW|g" "$1" > "$2"
  if grep -n '@[A-Z_]*@' "$2" >&2; then die "unrendered placeholder in $2"; fi
}

port_busy() { # port: something listens on it
  awk -v p=":$(printf '%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 4) == p {f = 1} END {exit !f}' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

up() {
  check_prereqs
  lock
  for c in $COMPONENTS; do
    recorded "$c" >/dev/null && die "a cluster is already running from $DIR ($c); run 'hack/cluster/local.sh down' first"
  done
  cleanup_locked
  trap 'log "up failed: component logs in $LOGS; hack/cluster/local.sh down stops what was started"' EXIT
  for p in 2379 6443 10250 10257 10259; do
    port_busy "$p" && die "port $p is in use: another cluster (or etcd/apiserver) runs on this host; stop it first"
  done
  NODE_IP=$(node_ip)
  [ -n "$NODE_IP" ] || die "cannot find this host's IPv4 address"
  T_START=$(now)
  # runtime data on a tmpfs: containerd's snapshots, etcd, the kubelet's pod dirs. Removing hundreds of MB of
  # unpacked image files from this VM's ext4 (mounted with discard) takes 10+ s; unmounting a tmpfs is instant.
  mkdir -p "$RUN"
  if [ "${LASTCALL_CLUSTER_TMPFS:-1}" = 1 ]; then
    mount -t tmpfs -o "size=${LASTCALL_CLUSTER_TMPFS_SIZE:-8g},mode=0755" lastcall-run "$RUN"
  fi
  mkdir -p "$RUN"/{containerd,etcd,kubelet,cni/ipam,pod-logs,runc} "$PIDS" "$DIR/config/cni"
  [ -d "$LOGS" ] && { rm -rf "$DIR/logs.prev"; mv "$LOGS" "$DIR/logs.prev"; }
  mkdir -p "$LOGS"
  # certificates are kept across runs for the same node address
  if [ "$(cat "$PKI/.node" 2>/dev/null)" != "$NODE $NODE_IP" ]; then
    rm -rf "$PKI"
    "$here/gen-certs.sh" "$PKI" "$NODE" "$NODE_IP"
    log "certificates generated ($(since "$T_START") s)"
  fi
  cp "$PKI/admin.kubeconfig" "$KUBECONFIG_PATH"
  render "$here/containerd.toml.in" "$DIR/config/containerd.toml"
  render "$here/kubelet-config.yaml.in" "$DIR/config/kubelet-config.yaml"
  render "$here/10-bridge.conflist.in" "$DIR/config/cni/10-bridge.conflist"
  # host values the kubelet and the CNI bridge plugin change: restored by cleanup
  [ -f "$DIR/sysctl.baseline" ] || sysctl $SYSCTLS 2>/dev/null | tr -d ' ' > "$DIR/sysctl.baseline"
  local fg_flag=() fg_kubelet=()
  if [ -n "$FEATURE_GATES" ]; then
    fg_flag=(--feature-gates="$FEATURE_GATES")
    fg_kubelet=(--feature-gates="$FEATURE_GATES")
    log "feature gates: $FEATURE_GATES"
  fi

  # no registry is used: a pull (an image that was not loaded) goes to a closed loopback port instead of the
  # network, so it fails at once ("proxyconnect tcp: dial tcp 127.0.0.1:9") and no traffic leaves the host
  start containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= no_proxy= \
    containerd --config "$DIR/config/containerd.toml"
  start etcd "$BIN/etcd" --name lastcall --data-dir "$RUN/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster lastcall=http://127.0.0.1:2380 --listen-metrics-urls '' \
    --unsafe-no-fsync --log-level warn
  wait_for containerd containerd ctr -a "$SOCK" version
  # the sandbox image must be there before the kubelet creates a pod
  ctr -a "$SOCK" -n k8s.io images import "$LASTCALL_CACHE/images/pause.tar" >/dev/null || die "importing the pause image failed"
  wait_for etcd etcd curl -sf http://127.0.0.1:2379/health
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 \
    --advertise-address="$NODE_IP" --bind-address=0.0.0.0 --secure-port=6443 \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --enable-aggregator-routing=true \
    --shutdown-send-retry-after=true \
    --profiling=false "${fg_flag[@]}"
  # the kubelet retries until the apiserver answers; starting it now overlaps their start-up
  start kubelet "$BIN/kubelet" --config="$DIR/config/kubelet-config.yaml" --kubeconfig="$PKI/kubelet.kubeconfig" \
    --hostname-override="$NODE" --node-ip="$NODE_IP" \
    --root-dir="$RUN/kubelet" --cert-dir="$RUN/kubelet/pki" -v=2 "${fg_kubelet[@]}"
  # pods reach the apiserver at its service IP (10.96.0.1:443) without kube-proxy: DNAT to the node IP:6443
  iptables -w -t nat -N LASTCALL-APISERVER
  iptables -w -t nat -A LASTCALL-APISERVER -s "$POD_CIDR" -d 10.96.0.1/32 -p tcp --dport 443 \
    -j DNAT --to-destination "$NODE_IP:6443"
  iptables -w -t nat -A PREROUTING -j LASTCALL-APISERVER
  wait_for kube-apiserver kube-apiserver api /readyz
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$PKI/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$PKI/controller-manager.kubeconfig" --authorization-kubeconfig="$PKI/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --kube-api-qps=100 --kube-api-burst=200 "${fg_flag[@]}"
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig="$PKI/scheduler.kubeconfig" --authorization-kubeconfig="$PKI/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false "${fg_flag[@]}"
  wait_for "node $NODE Ready" kubelet node_ready
  local t_node; t_node=$(since "$T_START")
  wait_for "default ServiceAccount" kube-controller-manager api /api/v1/namespaces/default/serviceaccounts/default
  local t_sa; t_sa=$(since "$T_START")
  local t_total; t_total=$(since "$T_INVOKE")
  printf 'node_ready_s=%s\ndefault_sa_s=%s\nup_total_s=%s\n' "$t_node" "$t_sa" "$t_total" > "$DIR/timings"
  log "cluster up: node Ready after ${t_node} s, default ServiceAccount after ${t_sa} s (timed after the initial cleanup; ${t_total} s in all)"
  log "logs: $LOGS"
  trap - EXIT
  echo "$KUBECONFIG_PATH"
}

# api PATH: GET from the apiserver as admin (curl: much cheaper to poll than kubectl)
api() { curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:6443$1"; }
node_ready() {
  api "/api/v1/nodes/$NODE" | tr -d ' \n' | grep -q '"type":"Ready","status":"True"'
}

# --- down / cleanup -------------------------------------------------------------------------------------------------
down() {
  lock
  local t0; t0=$(now)
  stop_one kubelet
  if recorded containerd >/dev/null && [ -S "$SOCK" ]; then
    # every pod sandbox: stops its containers and tears down their networking through CNI
    "$TOOLS/crirm" -timeout 30s "unix://$SOCK" >&2 || log "crirm reported errors (cleanup will handle leftovers)"
  fi
  stop_one kube-scheduler & stop_one kube-controller-manager & wait
  stop_one kube-apiserver 60
  stop_one etcd
  local shims; shims=$(shim_pids)
  stop_one containerd
  # shims exit with their sandboxes; any left (a sandbox crirm could not remove) are stopped here
  local pid
  for pid in $shims; do alive "$pid" && kill -TERM "$pid" 2>/dev/null && log "stopped leftover shim $pid"; done
  log "all components stopped ($(since "$t0") s)"
  cleanup_locked
  log "down + cleanup took $(since "$t0") s"
}

cleanup() { lock; cleanup_locked; }

# The containerd shims of this cluster: containerd-shim-runc-v2 processes whose -address is this cluster's own
# containerd socket (a path under $DIR, so no other containerd's shims ever match). They run detached from
# containerd (parent PID 1) and survive it when containerd is killed; containerd 1.6 writes no shim.pid.
shim_pids() {
  local f pid
  for f in $(grep -laF -- "$SOCK" /proc/[0-9]*/cmdline 2>/dev/null); do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    { tr '\0' '\n' < "$f"; } 2>/dev/null | awk -v sock="$SOCK" '
      NR == 1 && $0 ~ /containerd-shim/ { shim = 1 }
      prev == "-address" && $0 == sock { addr = 1 }
      { prev = $0 }
      END { exit !(shim && addr) }' && echo "$pid"
  done
  return 0
}
# processes left in the pod cgroups (containers whose shim died with a killed containerd)
pod_pids() {
  local files
  shopt -s globstar nullglob
  files=(/sys/fs/cgroup/*/kubepods/**/cgroup.procs)
  [ ${#files[@]} -gt 0 ] && cat "${files[@]}" 2>/dev/null | sort -un
  return 0
}

cleanup_locked() {
  local left=0 pid
  # 1. processes this cluster recorded (e.g. after a killed run), then shims, then anything in pod cgroups
  for c in kubelet kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do
    if read -r pid _ < <(recorded "$c"); then kill -KILL "$pid" 2>/dev/null && left=$((left + 1)); fi
    rm -f "$PIDS/$c"
  done
  for pid in $(shim_pids); do alive "$pid" && kill -KILL "$pid" 2>/dev/null && left=$((left + 1)); done
  for pid in $(pod_pids); do alive "$pid" && kill -KILL "$pid" 2>/dev/null && left=$((left + 1)); done
  [ "$left" -gt 0 ] && { log "cleanup: killed $left leftover processes"; sleep 0.3; }
  # 2. mounts under the state dir, deepest first (overlay rootfs, netns, pod volumes)
  if [ -d "$DIR" ]; then
    awk -v b="$DIR/" 'index($2, b) == 1 {print $2}' /proc/self/mounts | awk '{print length, $0}' | sort -rn |
      cut -d' ' -f2- | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"; done
  fi
  # 3. network: the bridge, our DNAT chain, the kubelet's and CNI's chains
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
  local ipt t ch
  for ipt in iptables ip6tables; do
    # one cheap look first: usually there is nothing to delete
    "$ipt-save" 2>/dev/null | grep -qE '^:(KUBE-|CNI-|LASTCALL-)|-j (KUBE-|CNI-|LASTCALL-)' || continue
    for t in filter nat mangle; do
      $ipt -w -t "$t" -S 2>/dev/null | awk '/^-A .*-j (KUBE-|CNI-|LASTCALL-)/ {sub(/^-A/, "-D"); print}' |
        while read -r r; do eval "$ipt -w -t $t $r" 2>/dev/null || true; done
      for ch in $($ipt -w -t "$t" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-|LASTCALL-)/ {print $2}'); do
        $ipt -w -t "$t" -F "$ch" 2>/dev/null || true
      done
      for ch in $($ipt -w -t "$t" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-|LASTCALL-)/ {print $2}'); do
        $ipt -w -t "$t" -X "$ch" 2>/dev/null || log "cannot delete $ipt $t chain $ch"
      done
    done
  done
  # 4. pod cgroups, deepest first
  local cg
  for cg in /sys/fs/cgroup/*/kubepods; do
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ -d "$cg" ] && log "cgroup $cg still exists"
  done
  # 5. fixed host paths: only what the kubelet/CNI/containerd put there
  for f in /var/log/containers/*; do [ -L "$f" ] && rm -f "$f"; done
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
  rm -rf /var/lib/cni/results /var/lib/cni/networks/lastcall-podnet
  for f in /run/containerd/s/*; do [ -S "$f" ] && rm -f "$f"; done
  local d
  for d in $HOST_DIRS; do rmdir "$d" 2>/dev/null || true; done
  # 6. host settings
  if [ -f "$DIR/sysctl.baseline" ]; then
    sysctl -q -p "$DIR/sysctl.baseline" >/dev/null 2>&1 || log "could not restore every sysctl in $DIR/sysctl.baseline"
    rm -f "$DIR/sysctl.baseline"
  fi
  # 7. runtime data; pki, config and logs stay (logs are what a failed run needs)
  rm -rf "$RUN"
  return 0
}

# --- status, logs, load --------------------------------------------------------------------------------------------
status() { # exit 0: every component runs; 1: none; 3: some
  local up=0 down=0 c pid st rss
  for c in $COMPONENTS; do
    if read -r pid st < <(recorded "$c"); then
      rss=$(awk '/^VmRSS/ {print int($2/1024)}' "/proc/$pid/status" 2>/dev/null)
      printf '%-24s pid %-8s %5s MiB\n' "$c" "$pid" "$rss"
      up=$((up + 1))
    else
      printf '%-24s stopped\n' "$c"
      down=$((down + 1))
    fi
  done
  if [ "$up" -gt 0 ]; then
    echo "cluster RSS (components + shims + pods): $(cluster_rss) MiB"
    kc get nodes -o wide 2>/dev/null || true
  fi
  [ "$down" = 0 ] && return 0
  [ "$up" = 0 ] && return 1
  return 3
}

cluster_rss() {
  local pids=() c pid
  for c in $COMPONENTS; do read -r pid _ < <(recorded "$c") && pids+=("$pid"); done
  pids+=($(shim_pids) $(pod_pids))
  for pid in "${pids[@]}"; do awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null; done |
    awk '{s += $1} END {print int(s/1024)}'
}

copy_logs() { # DIR
  local out=$1
  [ -n "$out" ] || die "usage: local.sh logs DIR"
  mkdir -p "$out"
  [ -d "$LOGS" ] && cp -r "$LOGS/." "$out/" 2>/dev/null || true
  [ -d "$RUN/pod-logs" ] && cp -rL "$RUN/pod-logs" "$out/pods" 2>/dev/null || true
  [ -f "$DIR/timings" ] && cp "$DIR/timings" "$out/" || true
  log "component logs copied to $out"
}

load() { # FILE.tar
  local tar=${1:-}
  [ -f "$tar" ] || die "usage: local.sh load IMAGE.tar (file not found: '$tar')"
  recorded containerd >/dev/null && [ -S "$SOCK" ] || die "the cluster is not running (hack/cluster/local.sh up)"
  local t0; t0=$(now)
  ctr -a "$SOCK" -n k8s.io images import "$tar" >&2 || die "ctr images import $tar failed"
  log "loaded $(basename "$tar") ($(since "$t0") s)"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  cleanup) cleanup ;;
  purge) cleanup; rm -rf "$DIR" ;;
  status) status ;;
  kubeconfig) echo "$KUBECONFIG_PATH" ;;
  load) shift; load "$@" ;;
  logs) shift; copy_logs "${1:-}" ;;
  rss) cluster_rss ;;
  *) sed -n '2,/^set -e/p' "$0" | sed -e '/^set -e/d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
