#!/usr/bin/env bash
# Certificates, the service-account key pair, static-token identities and one kubeconfig per
# identity. Made once per state folder; existing files are kept.
. "$(dirname "$0")/lib.sh"
PKI=$1
mkdir -p "$PKI"; chmod 700 "$PKI"
cd "$PKI"
umask 077

ossl() { openssl "$@" 2>/dev/null; }

if [ ! -s ca.crt ]; then
  ossl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=vtx-local-ca"
fi

# sign NAME SUBJECT [SAN]: a key and a CA-signed certificate.
sign() {
  local name=$1 subj=$2 san=${3:-}
  [ -s "$name.crt" ] && return 0
  ossl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj"
  if [ -n "$san" ]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$name.ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' >"$name.ext"
  fi
  ossl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 3650 -extfile "$name.ext"
  rm -f "$name.csr" "$name.ext"
}
sign apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"

if [ ! -s sa.key ]; then
  ossl genrsa -out sa.key 2048
  ossl rsa -in sa.key -pubout -out sa.pub
fi

# Static token identities: token,user,uid,"groups" (one added to an older stack's file too).
tok() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
identity() { # USER UID [GROUPS]
  grep -q "^[^,]*,$1," tokens.csv 2>/dev/null && return 0
  echo "$(tok),$1,$2${3:+,\"$3\"}" >>tokens.csv
}
touch tokens.csv
identity vtx-admin vtx-admin system:masters
identity "system:node:$NODE_NAME" "node-$NODE_NAME" system:nodes
identity "system:node:$NODE2_NAME" "node-$NODE2_NAME" system:nodes
identity system:kube-scheduler kube-scheduler
identity system:kube-controller-manager kube-controller-manager
identity system:kube-proxy kube-proxy
identity vtx:coredns coredns
identity vtx:kube-router kube-router
identity vtx:prometheus prometheus

# kubeconfig FILE USER: a kubeconfig for the token of USER.
kubeconfig() {
  local file=$1 user=$2 token
  token=$(awk -F, -v u="$user" '$2 == u {print $1}' tokens.csv)
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: vtx
  cluster:
    server: https://$NODE_IP:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    token: $token
contexts:
- name: vtx
  context: {cluster: vtx, user: $user}
current-context: vtx
KC
}
kubeconfig admin.kubeconfig vtx-admin
kubeconfig kubelet.kubeconfig "system:node:$NODE_NAME"
kubeconfig kubelet-2.kubeconfig "system:node:$NODE2_NAME"
kubeconfig scheduler.kubeconfig system:kube-scheduler
kubeconfig controller-manager.kubeconfig system:kube-controller-manager
kubeconfig kube-proxy.kubeconfig system:kube-proxy
kubeconfig coredns.kubeconfig vtx:coredns
kubeconfig kube-router.kubeconfig vtx:kube-router
kubeconfig prometheus.kubeconfig vtx:prometheus
cp admin.kubeconfig "$VTX_STATE/kubeconfig"
