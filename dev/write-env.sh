#!/usr/bin/env bash
# Writes $VTX_STATE/env: `export` lines through which host-side tools and scripts use the stack.
. "$(dirname "$0")/lib.sh"
f="$VTX_STATE/env"
umask 077
{
  echo "# The local vtx stack ($VTX_STATE). Load with: eval \"\$(make -s env)\""
  echo "export PATH=\"$REPO_DIR/.venv/bin:$STACK_PATH:\${PATH}\""
  echo "export KUBECONFIG=\"$VTX_STATE/kubeconfig\""
  echo "export CONTAINERD_ADDRESS=\"$CONTAINERD_SOCK\""
  echo "export VTX_DATABASE_URL=\"postgresql://$PG_USER:$(secret postgres)@127.0.0.1:$PG_PORT/$PG_DB\""
  echo "export VTX_S3_ENDPOINT=\"http://$NODE_IP:$S3_PORT\""
  echo "export VTX_S3_PUBLIC_ENDPOINT=\"http://127.0.0.1:$S3_PORT\""
  echo "export VTX_S3_ACCESS_KEY=\"$S3_ACCESS_KEY\""
  echo "export VTX_S3_SECRET_KEY=\"$(secret s3)\""
  echo "export VTX_S3_BUCKET=\"$S3_BUCKET\""
  echo "export VTX_PULSAR_URL=\"pulsar://$NODE_IP:$PULSAR_PORT\""
  echo "export VTX_PULSAR_ADMIN_URL=\"http://$NODE_IP:$PULSAR_HTTP_PORT\""
  echo "export VTX_IPFS_API_URL=\"http://127.0.0.1:$KUBO_API_PORT\""
  echo "export VTX_IPFS_GATEWAY_URL=\"http://127.0.0.1:$KUBO_GATEWAY_PORT\""
  # Kubo's RPC answers only these (dev/servers.sh): the whole RPC, and add alone (job pods).
  echo "export VTX_IPFS_API_TOKEN=\"$(secret ipfs-rpc)\""
  echo "export VTX_IPFS_JOB_TOKEN=\"$(secret ipfs-rpc-job)\""
  echo "export VTX_JOB_SECRET=\"vtx-jobrunner\""
  # The stack's Prometheus (read by tests and people, not by vtx).
  echo "export VTX_PROMETHEUS_URL=\"http://127.0.0.1:$PROMETHEUS_PORT\""
  # A token for this stack's API; the API itself only ever sees its hash.
  token="vtx_$(secret api-token)"
  echo "export VTX_API_TOKEN=\"$token\""
  echo "export VTX_API_TOKENS=\"local:$(printf %s "$token" | sha256sum | cut -c1-64)\""
} >"$f"
