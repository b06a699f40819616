#!/usr/bin/env bash
# The local cluster's second node: a network namespace of its own, joined to the bridge by a veth,
# with its own containerd, kubelet, kube-proxy and kube-router, registered with the same API
# server. Its pods get 10.244.1.0/24 on a bridge inside the namespace; the host routes that range
# to the node's address, so pods on either node reach the servers (10.244.0.1) and each other.
#
#   dev/node2.sh start   # after up.sh: idempotent
#   dev/node2.sh stop    # its processes, pods, namespace and route, and its Node (data stays)
#   dev/node2.sh kill    # SIGKILL its processes and pods, as a machine lost (the Node stays)
#
# Both kubelets run in the host's mount namespace (nsenter --net only: `ip netns exec` would give
# each a mount namespace of its own, and containerd would not see the kubelet's volume mounts).
# Each kubelet has its own cgroup root, root and pod-log folders, so neither collects the other's.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "the local stack needs root"

IN_NS=(nsenter "--net=/run/netns/$NODE2_NETNS")
in_ns() { "${IN_NS[@]}" "$@"; }

node2_network() {
  [ -e "/run/netns/$NODE2_NETNS" ] || ip netns add "$NODE2_NETNS"
  if ! ip link show "$NODE2_VETH" >/dev/null 2>&1; then
    ip link add "$NODE2_VETH" type veth peer name eth0 netns "$NODE2_NETNS"
  fi
  ip link set "$NODE2_VETH" master "$BRIDGE" up
  in_ns ip link set lo up
  # A /32 and every route through the host: traffic between the nodes' pods goes the same way
  # both ways (the host's conntrack sees both directions).
  in_ns ip addr replace "$NODE2_IP/32" dev eth0
  in_ns ip link set eth0 up
  in_ns ip route replace "$NODE_IP" dev eth0
  in_ns ip route replace default via "$NODE_IP" dev eth0
  in_ns sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.ipv4.ip_forward=1
  ip route replace "$NODE2_POD_CIDR" via "$NODE2_IP" dev "$BRIDGE"
  # kube-proxy's service rules must see traffic between pods on the node's bridge.
  if [ -e "/proc/sys/net/bridge/bridge-nf-call-iptables" ]; then
    in_ns sh -c 'echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables' 2>/dev/null || true
  fi
}

node2_config() {
  local s=$NODE2_STATE PKI="$VTX_STATE/pki"
  mkdir -p "$s"/{containerd,cni/net.d,cni/networks,kubelet/root,kubelet/pki,kubelet/pod-logs,kube-proxy} "$NODE2_RUN"
  # The first node's files, with this node's names, addresses and folders.
  sed -e "s|$VTX_STATE/containerd/root|$s/containerd/root|" \
      -e "s|$CONTAINERD_RUN|$NODE2_RUN|g" \
      -e "s|$VTX_STATE/cni/net.d|$s/cni/net.d|" \
      "$VTX_STATE/containerd/config.toml" | write_if_changed "$s/containerd/config.toml"
  cni_conflist "$NODE2_BRIDGE" "$NODE2_POD_CIDR" "$NODE2_GATEWAY" "$s/cni/networks" |
    write_if_changed "$s/cni/net.d/10-vtx.conflist"
  {
    sed -e "s|unix://$CONTAINERD_SOCK|unix://$NODE2_SOCK|" -e "s|^address: .*|address: $NODE2_IP|" \
      "$VTX_STATE/kubelet/config.yaml"
    echo "cgroupRoot: /$NODE2_NAME"
    echo "podLogsDir: $s/kubelet/pod-logs"
  } | write_if_changed "$s/kubelet/config.yaml"
  sed -e "s|^bindAddress: .*|bindAddress: $NODE2_IP|" \
      -e "s|^hostnameOverride: .*|hostnameOverride: $NODE2_NAME|" \
      -e "s|^nodePortAddresses: .*|nodePortAddresses: [\"$NODE2_IP/32\"]|" \
      -e "s|^clusterCIDR: .*|clusterCIDR: $CLUSTER_CIDR|" \
      "$VTX_STATE/kube-proxy/config.yaml" | write_if_changed "$s/kube-proxy/config.yaml"
}

node2_start() {
  pid_alive kubelet || die "the first node is not up: run make up first"
  export PATH="$STACK_PATH:$PATH"
  node2_network
  node2_config
  local s=$NODE2_STATE PKI="$VTX_STATE/pki" c
  # The kubelet's cgroup root must exist in every hierarchy (cgroup v1; a cpuset gets its
  # parent's cpus and memory nodes, or no task could join it).
  for c in /sys/fs/cgroup/*/; do
    [ "$(basename "$c")" = unified ] && continue
    mkdir -p "$c$NODE2_NAME"
  done
  if [ -d /sys/fs/cgroup/cpuset ]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$NODE2_NAME/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$NODE2_NAME/cpuset.mems"
  fi
  if ! pid_alive node2-containerd; then
    local offset
    offset=$(stat -c %s "$LOGS/node2-containerd.log" 2>/dev/null || echo 0)
    start_bg node2-containerd "${IN_NS[@]}" containerd --config "$s/containerd/config.toml"
    wait_for node2-containerd 30 sh -c "tail -c +$((offset + 1)) '$LOGS/node2-containerd.log' | grep -F 'Start streaming server'"
  fi
  wait_for node2-containerd 30 ctr --address "$NODE2_SOCK" version
  "$DEV_DIR/pause-image.sh" "$NODE2_SOCK"
  # vtx's images too, when they are built (make images imports into every node after this).
  if [ -s "$VTX_STATE/images/vtx-job.containerd.id" ]; then VTX_NODES=2 "$DEV_DIR/images.sh"; fi
  start_bg node2-kubelet "${IN_NS[@]}" "$K8S_BIN/kubelet" --config "$s/kubelet/config.yaml" \
    --kubeconfig "$PKI/kubelet-2.kubeconfig" --hostname-override "$NODE2_NAME" --node-ip "$NODE2_IP" \
    --root-dir "$s/kubelet/root" --cert-dir "$s/kubelet/pki"
  start_bg node2-kube-proxy "${IN_NS[@]}" "$K8S_BIN/kube-proxy" --config "$s/kube-proxy/config.yaml"
  wait_for node2-kubelet 60 "${IN_NS[@]}" curl -fsS http://127.0.0.1:10248/healthz
  wait_for node2-kubelet 120 sh -c "'$K8S_BIN/kubectl' --kubeconfig '$VTX_STATE/kubeconfig' get node '$NODE2_NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  start_bg node2-kube-router "${IN_NS[@]}" "$KUBE_ROUTER_BIN/kube-router" --kubeconfig "$PKI/kube-router.kubeconfig" \
    --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
    --hostname-override "$NODE2_NAME" --health-port 0 --metrics-port 0 --iptables-sync-period 1m
  wait_for node2-kube-proxy 30 "${IN_NS[@]}" curl -fsS http://127.0.0.1:10256/healthz
  wait_for node2-kube-router 60 "${IN_NS[@]}" iptables -S KUBE-ROUTER-FORWARD
  log "node $NODE2_NAME is up ($NODE2_IP, pods $NODE2_POD_CIDR)"
}

# node2_signal SIGNAL: the node's processes.
node2_signal() {
  local sig=$1 p
  for p in "${NODE2_PARTS[@]}"; do
    if pid_alive "$p"; then kill -"$sig" -- "-$(cat "$PIDS/$p.pid")" 2>/dev/null || true; fi
  done
}

case "${1:-}" in
  start) node2_start ;;
  kill)
    # As a machine lost: everything on it stops at once, its pods too. The API server hears
    # nothing more from it; its namespace and routes stay, as a dead machine's cables would.
    node2_signal KILL
    kill_shims "$NODE2_SOCK"
    ;;
  stop)
    node2_signal TERM
    sleep 1
    node2_signal KILL
    rm -f "$PIDS"/node2-*.pid
    sweep_node2_state
    # Out of the cluster, as a node taken away: its pods with it.
    if kctl get --raw /readyz >/dev/null 2>&1; then
      kctl delete node "$NODE2_NAME" --ignore-not-found --wait=true >/dev/null
    fi
    log "node $NODE2_NAME stopped and removed from the cluster"
    ;;
  *) die "usage: dev/node2.sh start|stop|kill" ;;
esac
