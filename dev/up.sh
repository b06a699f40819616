#!/usr/bin/env bash
# Brings the local stack up: a single-node Kubernetes cluster and the servers pods use.
# Idempotent: parts already running are left alone; a stack already up returns at once.
asked_nodes=${VTX_NODES:-}  # make up NODES=1 takes a running second node away; make up keeps it
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "the local stack needs root (bridge, iptables, kubelet mounts)"

started=$SECONDS
mkdir -p "$VTX_STATE" "$LOGS" "$PIDS"

# Uploads, outputs and the servers' logs all land in VTX_STATE: a nearly full disk would make the
# servers fail later in ways that do not say why.
free_gb=$(( $(df --output=avail -k "$VTX_STATE" | tail -1) / 1024 / 1024 ))
[ "$free_gb" -ge "$STATE_MIN_FREE_GB" ] ||
  die "only ${free_gb} GB free on the disk of $VTX_STATE; the stack needs at least ${STATE_MIN_FREE_GB} GB (STATE_MIN_FREE_GB)"

stack_healthy() {
  local p
  for p in "${PARTS[@]}"; do pid_alive "$p" || return 1; done
  [ -f "$VTX_STATE/up.done" ] && kctl get --raw /readyz >/dev/null 2>&1
}
one_node_asked() {
  [ "$asked_nodes" = 1 ] && { pid_alive node2-kubelet || pid_alive node2-containerd; }
}
if stack_healthy; then
  if one_node_asked; then
    "$DEV_DIR/node2.sh" stop
    echo 1 >"$VTX_STATE/nodes"
  fi
  log "stack is already up ($VTX_STATE); nothing to do"
  exit 0
fi

"$DEV_DIR/install.sh" all
export PATH="$STACK_PATH:$PATH"
installed=$SECONDS

if ! any_part_alive; then
  # Nothing of ours runs: whatever a crashed or stopped stack left in the kernel goes first.
  sweep_kernel_state
fi
rm -f "$VTX_STATE/up.done"
echo "$VTX_STATE" >"$VTX_RUN_MARK"
echo "$VTX_NODES" >"$VTX_STATE/nodes"

# --- network -------------------------------------------------------------------------------
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
fi
ip addr replace "$NODE_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
# kube-proxy's service rules must see traffic between pods on the bridge.
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables

# --- certificates and identities ---------------------------------------------------------------
PKI="$VTX_STATE/pki"
"$DEV_DIR/pki.sh" "$PKI"

# --- etcd and the control plane --------------------------------------------------------------
start_bg etcd "$K8S_BIN/etcd" --name vtx --data-dir "$VTX_STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster vtx=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
  --quota-backend-bytes 2147483648 --log-level warn
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

start_bg kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --kubelet-preferred-address-types InternalIP \
  --kubelet-client-certificate "$PKI/kubelet-client.crt" --kubelet-client-key "$PKI/kubelet-client.key" \
  --allow-privileged=false --profiling=false --event-ttl 2h
wait_for kube-apiserver 60 kctl get --raw /readyz

start_bg kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig "$PKI/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$PKI/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$PKI/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' \
  --terminated-pod-gc-threshold 200 --profiling=false \
  --node-monitor-period 2s --node-monitor-grace-period 20s
start_bg kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig "$PKI/scheduler.kubeconfig" \
  --authentication-kubeconfig "$PKI/scheduler.kubeconfig" \
  --authorization-kubeconfig "$PKI/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false

# RBAC the cluster's own parts need beyond the built-in roles.
kctl apply -f "$DEV_DIR/cluster/system.yaml" >/dev/null

# --- node: containerd, CNI, kubelet, kube-proxy, CoreDNS ---------------------------------------
"$DEV_DIR/node-config.sh"
if ! pid_alive containerd; then
  # Its CRI service answers "not initialized yet" for a moment after the socket is up, and the
  # kubelet exits on that: wait for the CRI's last start-up step in this start's log.
  offset=$(stat -c %s "$LOGS/containerd.log" 2>/dev/null || echo 0)
  start_bg containerd containerd --config "$VTX_STATE/containerd/config.toml"
  wait_for containerd 30 sh -c "tail -c +$((offset + 1)) '$LOGS/containerd.log' | grep -F 'Start streaming server'"
fi
wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
"$DEV_DIR/pause-image.sh"

start_bg kubelet "$K8S_BIN/kubelet" --config "$VTX_STATE/kubelet/config.yaml" \
  --kubeconfig "$PKI/kubelet.kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
  --root-dir "$VTX_STATE/kubelet/root" --cert-dir "$VTX_STATE/kubelet/pki"
start_bg kube-proxy "$K8S_BIN/kube-proxy" --config "$VTX_STATE/kube-proxy/config.yaml"
start_bg coredns "$COREDNS_BIN/coredns" -conf "$VTX_STATE/coredns/Corefile"

# --- servers pods use ------------------------------------------------------------------------
"$DEV_DIR/servers.sh" start

# The node's Ready condition may be a stale one from before a restart: ask the kubelet first.
# After the API server has been away, the node controller may mark the node not ready as it
# comes back, and the kubelet's next status report (every 10 s, retried) makes it Ready again:
# seen taking more than a minute once, hence the longer wait.
wait_for kubelet 60 curl -fsS http://127.0.0.1:10248/healthz
wait_for kubelet 150 sh -c "'$K8S_BIN/kubectl' --kubeconfig '$VTX_STATE/kubeconfig' get node '$NODE_NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
# NetworkPolicies enforced with iptables and ipsets (its firewall only: the CNI bridge routes,
# kube-proxy proxies). No health or metrics port: nothing of it listens. It finds its node at
# start, so it starts once the kubelet has registered the node.
start_bg kube-router "$KUBE_ROUTER_BIN/kube-router" --kubeconfig "$PKI/kube-router.kubeconfig" \
  --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
  --hostname-override "$NODE_NAME" --health-port 0 --metrics-port 0 --iptables-sync-period 1m
wait_for coredns 30 curl -fsS http://127.0.0.1:18181/ready
wait_for kube-proxy 30 curl -fsS http://127.0.0.1:10256/healthz
wait_for kube-router 60 iptables -S KUBE-ROUTER-FORWARD
wait_for kube-controller-manager 30 curl -fsSk https://127.0.0.1:10257/healthz
wait_for kube-scheduler 30 curl -fsSk https://127.0.0.1:10259/healthz
if [ "$VTX_NODES" = 2 ]; then
  "$DEV_DIR/node2.sh" start
elif one_node_asked; then
  "$DEV_DIR/node2.sh" stop
fi

"$DEV_DIR/servers.sh" wait
"$DEV_DIR/servers.sh" bootstrap
kctl apply -f "$VTX_STATE/deps.yaml" >/dev/null
"$DEV_DIR/write-env.sh"

touch "$VTX_STATE/up.done"
stage_took start "$installed"
log "stack is up in $((SECONDS - started))s; state and logs in $VTX_STATE"
log "use it from a shell with: eval \"\$(make -s env)\""
