# Shared helpers for the local stack scripts. Sourced, never run.
# shellcheck shell=bash
set -euo pipefail

DEV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$DEV_DIR/.." && pwd)"
# shellcheck source=dev/versions.env
. "$DEV_DIR/versions.env"

# Built tools, cached per version and shared by every clone on the machine.
VTX_CACHE="${VTX_CACHE:-$HOME/.cache/vtx}"
# Data, logs, pid files, certificates and generated config of the running stack.
VTX_STATE="${VTX_STATE:-$REPO_DIR/.stack}"
# Machine-wide marker (tmpfs, like the kernel state it describes): which state folder the
# kernel state (mounts, bridge, iptables) belongs to, so a later `up` from any clone can sweep it.
VTX_RUN_MARK=/run/vtx-stack
# make up refuses to start with less free space than this on VTX_STATE's disk.
STATE_MIN_FREE_GB="${STATE_MIN_FREE_GB:-5}"

GO_ROOT="$VTX_CACHE/go-$GO_VERSION"
GOPROXY_URL="${GOPROXY_URL:-https://proxy.golang.org}"
K8S_BIN="$VTX_CACHE/kubernetes-$K8S_VERSION/bin"
COREDNS_BIN="$VTX_CACHE/coredns-$COREDNS_VERSION/bin"
HELM_BIN="$VTX_CACHE/helm-$HELM_VERSION/bin"
VERSITYGW_BIN="$VTX_CACHE/versitygw-$VERSITYGW_VERSION/bin"
KUBO_BIN="$VTX_CACHE/kubo-$KUBO_VERSION/bin"
KUBE_ROUTER_BIN="$VTX_CACHE/kube-router-$KUBE_ROUTER_VERSION/bin"
PROMETHEUS_BIN="$VTX_CACHE/prometheus-$PROMETHEUS_VERSION/bin"
PULSAR_HOME="$VTX_CACHE/pulsar-$PULSAR_VERSION"
PG_BIN="/usr/lib/postgresql/15/bin"
STACK_PATH="$K8S_BIN:$COREDNS_BIN:$HELM_BIN:$VERSITYGW_BIN:$KUBO_BIN:$PROMETHEUS_BIN:$PG_BIN"

# Addresses: every server pods use listens on the bridge address (and loopback where it can).
BRIDGE=vtx0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16  # every node's pod range
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
NODE_NAME="${VTX_NODE_NAME:-vtx-node}"
APISERVER_PORT=6443
ETCD_PORT=2379
PG_PORT=5432
PULSAR_PORT=6650
PULSAR_HTTP_PORT=8080
S3_PORT=7070
KUBO_API_PORT=5001
KUBO_GATEWAY_PORT=8081
PROMETHEUS_PORT=9090
S3_BUCKET=media-videos
S3_ACCESS_KEY=vtxlocal
PG_DB=vtx
PG_USER=vtx

LOGS="$VTX_STATE/logs"
PIDS="$VTX_STATE/pids"

# Note for pipelines: with pipefail, `cmd | grep -q` can fail when grep exits at the first match
# and cmd dies of SIGPIPE; use `grep ... >/dev/null`, which reads everything.

log() { printf '\033[1m[vtx]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[vtx] error:\033[0m %s\n' "$*" >&2; exit 1; }

# stamp NAME: true when the cached build NAME is complete.
have_stamp() { [ -f "$VTX_CACHE/.stamps/$1" ]; }
put_stamp() { mkdir -p "$VTX_CACHE/.stamps"; date -u +%FT%TZ >"$VTX_CACHE/.stamps/$1"; }

# Where `make demo` keeps the time each stage took this run ("NAME SECONDS" lines; dev/timings.sh
# prints them). Stages that ran side by side are marked with a trailing "bg".
TIMINGS="$VTX_STATE/timings"
# stage_took NAME SINCE: record that stage NAME ran from SINCE (a value of $SECONDS) until now.
stage_took() {
  mkdir -p "$VTX_STATE"
  echo "$1 $((SECONDS - $2))${VTX_STAGE_BG:+ bg}" >>"$TIMINGS"
}
# timed NAME CMD...: run CMD and record how long it took under NAME.
timed() {
  local name=$1 t0=$SECONDS rc=0; shift
  "$@" || rc=$?
  [ "$rc" -eq 0 ] && stage_took "$name" "$t0"
  return "$rc"
}

# path_without_go: $PATH without the folders holding a `go` command other than the stack's own,
# so that builds use the toolchain install.sh fetched whatever else the machine has.
path_without_go() {
  local out="" d dirs
  IFS=: read -ra dirs <<<"$PATH"
  for d in "${dirs[@]}"; do
    [ -x "$d/go" ] && [ "$d" != "$GO_ROOT/bin" ] && continue
    out="${out:+$out:}$d"
  done
  echo "$out"
}

# secret NAME: a random secret made once per state folder and kept in it (mode 600).
secret() {
  local f="$VTX_STATE/secrets/$1"
  if [ ! -s "$f" ]; then
    mkdir -p "$VTX_STATE/secrets"; chmod 700 "$VTX_STATE/secrets"
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f")
  fi
  cat "$f"
}

# pid_alive NAME: the part's process exists and is not a zombie waiting to be reaped.
pid_alive() {
  local f="$PIDS/$1.pid" state
  [ -f "$f" ] || return 1
  state=$(awk '{print $3}' "/proc/$(cat "$f")/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# start_bg NAME CMD...: start CMD in its own session, log to logs/NAME.log, pid to pids/NAME.pid.
start_bg() {
  local name=$1; shift
  mkdir -p "$LOGS" "$PIDS"
  if pid_alive "$name"; then return 0; fi
  log "starting $name"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}

# fail_part NAME WHY: name the part that failed, show the tail of its log, stop.
fail_part() {
  local name=$1 why=$2
  printf '\033[31m[vtx] %s failed: %s\033[0m\n' "$name" "$why" >&2
  if [ -f "$LOGS/$name.log" ]; then
    printf -- '--- last 40 lines of %s ---\n' "$LOGS/$name.log" >&2
    tail -n 40 "$LOGS/$name.log" >&2
  fi
  exit 1
}

# wait_for NAME SECONDS CMD...: run CMD until it succeeds, at most SECONDS; name the part on failure.
wait_for() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ -f "$PIDS/$name.pid" ] && ! pid_alive "$name"; then
      fail_part "$name" "process exited while waiting for it to answer ($*)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail_part "$name" "no answer within ${secs}s ($*)"
    fi
    sleep 0.5
  done
}

kctl() { "$K8S_BIN/kubectl" --kubeconfig "$VTX_STATE/kubeconfig" "$@"; }

# The stack's processes, in start order; `down` stops them in reverse.
PARTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router coredns postgres pulsar versitygw kubo prometheus)
CONTAINERD_RUN=/run/vtx/containerd
CONTAINERD_SOCK=$CONTAINERD_RUN/containerd.sock

# The second node (dev/node2.sh): its own network namespace, addresses, pod range and folders.
# How many nodes: VTX_NODES (make up NODES=2), else what the last `up` of this state folder used.
VTX_NODES="${VTX_NODES:-$(cat "$VTX_STATE/nodes" 2>/dev/null || echo 1)}"
NODE2_NAME="$NODE_NAME-2"
NODE2_NETNS=vtx-node2
NODE2_VETH=vtx0-node2
NODE2_IP=10.244.0.2
NODE2_POD_CIDR=10.244.1.0/24
NODE2_GATEWAY=10.244.1.1
NODE2_BRIDGE=vtx1
NODE2_STATE="$VTX_STATE/node2"
NODE2_RUN=/run/vtx/node2
NODE2_SOCK=$NODE2_RUN/containerd.sock
NODE2_PARTS=(node2-containerd node2-kubelet node2-kube-proxy node2-kube-router)
[[ "$VTX_NODES" =~ ^[12]$ ]] || die "VTX_NODES is 1 or 2, not $VTX_NODES"
[ "$VTX_NODES" = 2 ] && PARTS+=("${NODE2_PARTS[@]}")
# Every node's containerd socket, the first node's first.
node_sockets() {
  echo "$CONTAINERD_SOCK"
  [ "$VTX_NODES" = 2 ] && echo "$NODE2_SOCK"
  return 0
}

any_part_alive() {
  local p
  for p in "${PARTS[@]}"; do pid_alive "$p" && return 0; done
  return 1
}

# Remove the kernel state a stack leaves behind (mounts, network namespaces, bridge, iptables
# chains, containerd shims). Safe to run when nothing is left; run only with the stack stopped.
sweep_kernel_state() {
  local dirs=("$VTX_STATE" /run/vtx) d m
  [ -s "$VTX_RUN_MARK" ] && dirs+=("$(cat "$VTX_RUN_MARK")")
  # The containers first: a shim killed before them leaves their processes (pause, the API,
  # the operator) running as orphans.
  kill_shims "$CONTAINERD_SOCK"
  sweep_node2_state
  for d in "${dirs[@]}"; do unmount_under "$d"; done
  for m in /run/netns/cni-*; do
    [ -e "$m" ] || continue
    umount -l "$m" 2>/dev/null || true
    rm -f "$m"
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link show master "$BRIDGE" 2>/dev/null | awk -F'[ :@]+' '/^[0-9]+:/ {print $2}' | while read -r m; do
      ip link del "$m" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
  fi
  [ -x "$K8S_BIN/kube-proxy" ] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  # kube-router's NetworkPolicy rules and the ipsets they match on.
  [ -x "$KUBE_ROUTER_BIN/kube-router" ] && "$KUBE_ROUTER_BIN/kube-router" --cleanup-config >/dev/null 2>&1 || true
  local t c
  for t in filter nat mangle; do
    # Jumps from the built-in chains first, then flush and delete the chains themselves.
    iptables -t "$t" -S 2>/dev/null | { grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' || true; } |
      { grep -vE '^-A (KUBE|CNI)-' || true; } | sed 's/^-A /-D /' |
      while read -r rule; do eval "iptables -t $t $rule" 2>/dev/null || true; done
    for c in $(iptables -t "$t" -S 2>/dev/null | awk '/^-N (KUBE|CNI)-/ {print $2}'); do
      iptables -t "$t" -F "$c" 2>/dev/null || true
    done
    for c in $(iptables -t "$t" -S 2>/dev/null | awk '/^-N (KUBE|CNI)-/ {print $2}'); do
      iptables -t "$t" -X "$c" 2>/dev/null || true
    done
  done
  rm -rf /run/vtx "$VTX_STATE/cni/networks"
  rm -f "$VTX_RUN_MARK"
}

# unmount_under DIR: every mount below DIR, deepest first, lazily, so that busy or nested mounts
# do not block the rest.
unmount_under() {
  local m
  awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

# kill_shims SOCKET: the containers of the containerd at SOCKET, then their shims.
kill_shims() {
  local shim
  for shim in $(pgrep -f "containerd-shim-runc-v2 .*-address $1"); do
    pkill -KILL -P "$shim" 2>/dev/null || true
  done
  pkill -TERM -f "containerd-shim-runc-v2 .*-address $1" 2>/dev/null || true
  sleep 0.2
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $1" 2>/dev/null || true
}

# What the second node leaves in the kernel: its containers, namespace, veth and route (its
# iptables rules live in its namespace and go with it).
sweep_node2_state() {
  kill_shims "$NODE2_SOCK"
  unmount_under "$NODE2_RUN"
  unmount_under "$NODE2_STATE"
  ip route del "$NODE2_POD_CIDR" 2>/dev/null || true
  ip link del "$NODE2_VETH" 2>/dev/null || true
  if [ -e "/run/netns/$NODE2_NETNS" ]; then
    ip netns del "$NODE2_NETNS" 2>/dev/null || true
  fi
  rm -rf "$NODE2_RUN" "$NODE2_STATE/cni/networks"
}

# cni_conflist BRIDGE SUBNET GATEWAY DATADIR: a node's CNI config (a bridge with host-local
# addresses from .10 of its /24, routed through the gateway), on stdout.
cni_conflist() {
  cat <<JSON
{
  "cniVersion": "1.0.0",
  "name": "vtx",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$1",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$4",
        "ranges": [[{"subnet": "$2", "rangeStart": "${2%.0/24}.10", "gateway": "$3"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
JSON
}

# write_if_changed FILE: write stdin to FILE only when it differs (running parts watch theirs).
write_if_changed() {
  local f=$1 tmp
  tmp=$(mktemp "$f.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$f"; then rm -f "$tmp"; else mv "$tmp" "$f"; fi
}
