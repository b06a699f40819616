#!/usr/bin/env bash
# Configuration of the node's parts: containerd, CNI, kubelet, kube-proxy and CoreDNS.
. "$(dirname "$0")/lib.sh"
PKI="$VTX_STATE/pki"
mkdir -p "$VTX_STATE"/{containerd,cni/net.d,cni/networks,kubelet/root,kubelet/pki,kube-proxy,coredns} "$CONTAINERD_RUN"

write_if_changed "$VTX_STATE/containerd/config.toml" <<TOML
version = 2
root = "$VTX_STATE/containerd/root"
state = "$CONTAINERD_RUN/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_RUN/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.10"
  # The machine lacks CAP_SYS_RESOURCE: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$VTX_STATE/cni/net.d"
TOML

cni_conflist "$BRIDGE" "$POD_CIDR" "$NODE_IP" "$VTX_STATE/cni/networks" |
  write_if_changed "$VTX_STATE/cni/net.d/10-vtx.conflist"

write_if_changed "$VTX_STATE/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
failSwapOn: false
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $VTX_STATE/kubelet/resolv.conf
serializeImagePulls: false
maxPods: 110
# The disk is shared with everything else on the machine: evict late, collect images late.
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 97
imageGCLowThresholdPercent: 95
rotateCertificates: false
YAML
# Pods with dnsPolicy Default get nothing from the host: the cluster has no outside world.
echo "options ndots:1" | write_if_changed "$VTX_STATE/kubelet/resolv.conf"

write_if_changed "$VTX_STATE/kube-proxy/config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection: {kubeconfig: $PKI/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
nodePortAddresses: ["$NODE_IP/32"]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0}
YAML

write_if_changed "$VTX_STATE/coredns/Corefile" <<COREFILE
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $PKI/coredns.kubeconfig vtx
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
}
COREFILE
