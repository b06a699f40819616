#!/usr/bin/env bash
# The servers pods use: PostgreSQL, Pulsar standalone, versitygw (S3) and Kubo (IPFS); and
# Prometheus, which scrapes vtx.
# Usage: dev/servers.sh start|wait|bootstrap
. "$(dirname "$0")/lib.sh"
export PATH="$STACK_PATH:$PATH"
PGDATA="$VTX_STATE/postgres/data"
PGRUN="$VTX_STATE/postgres/run"
IPFS_PATH="$VTX_STATE/ipfs"; export IPFS_PATH

# PostgreSQL refuses to run as root: its folders belong to the postgres user, who must be able
# to reach them through the state folder's parents.
postgres_dirs() {
  local d
  mkdir -p "$VTX_STATE/postgres" "$PGRUN"
  d="$VTX_STATE"
  while [ "$d" != / ]; do
    runuser -u postgres -- test -x "$d" || chmod o+x "$d"
    d=$(dirname "$d")
  done
  chown postgres:postgres "$VTX_STATE/postgres" "$PGRUN"
  chmod 700 "$VTX_STATE/postgres"
}

start_postgres() {
  pid_alive postgres && return 0
  postgres_dirs
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    local pwfile="$VTX_STATE/postgres/superuser.pw"
    (umask 077; secret postgres-superuser >"$pwfile"); chown postgres "$pwfile"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$PGDATA" -U postgres --pwfile "$pwfile" \
      --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale C.UTF-8 >"$LOGS/postgres-initdb.log" 2>&1 ||
      fail_part postgres-initdb "initdb failed"
    rm -f "$pwfile"
    cat >>"$PGDATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1,$NODE_IP'
port = $PG_PORT
unix_socket_directories = '$PGRUN'
default_transaction_isolation = 'serializable'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF
  fi
  # Every node's pods (written at each start: a second node's range joins an older stack's).
  cat >"$PGDATA/pg_hba.conf" <<HBA
local all all peer
host all all 127.0.0.1/32 scram-sha-256
host all all $CLUSTER_CIDR scram-sha-256
HBA
  rm -f "$PGDATA/postmaster.pid"
  start_bg postgres runuser -u postgres -- "$PG_BIN/postgres" -D "$PGDATA"
}

start_pulsar() {
  pid_alive pulsar && return 0
  local dir="$VTX_STATE/pulsar"
  mkdir -p "$dir"
  cat >"$dir/standalone.conf" <<CONF
clusterName=standalone
brokerServicePort=$PULSAR_PORT
webServicePort=$PULSAR_HTTP_PORT
bindAddress=$NODE_IP
advertisedAddress=$NODE_IP
managedLedgerDefaultEnsembleSize=1
managedLedgerDefaultWriteQuorum=1
managedLedgerDefaultAckQuorum=1
allowAutoTopicCreation=true
allowAutoTopicCreationType=non-partitioned
brokerDeleteInactiveTopicsEnabled=false
functionsWorkerEnabled=false
webSocketServiceEnabled=false
transactionCoordinatorEnabled=false
# Topic policies live in a system topic whose unsynced tail a crash can lose, after which no
# topic can be created; vtx does not use them.
systemTopicEnabled=false
topicLevelPoliciesEnabled=false
# The embedded bookie syncs its journal, so that messages survive a crash of the stack.
journalSyncData=true
# The embedded bookie: loopback only (it binds every interface when no interface is named).
listeningInterface=lo
allowLoopback=true
# The bookie turns read-only when its disk is fuller than this fraction of the whole device, and
# then no topic can be written ("Not enough non-faulty bookies"). The default (0.95) leaves more
# than 12 GB unused on a 250 GB disk; like the kubelet's eviction (2%), only a nearly full disk
# stops it, and make up refuses to start with less than STATE_MIN_FREE_GB free.
diskUsageThreshold=0.99
diskUsageWarnThreshold=0.98
CONF
  cat >"$dir/log4j2.xml" <<'XML'
<Configuration status="warn">
  <Appenders><Console name="out" target="SYSTEM_OUT"><PatternLayout pattern="%d{HH:mm:ss.SSS} %-5level %c{1} - %msg%n"/></Console></Appenders>
  <Loggers><Root level="warn"><AppenderRef ref="out"/></Root></Loggers>
</Configuration>
XML
  start_bg pulsar java -Xms256m -Xmx768m -XX:MaxDirectMemorySize=512m -XX:+UseG1GC \
    -Dlog4j.configurationFile="$dir/log4j2.xml" -Dpulsar.allocator.exit_on_oom=true \
    -Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver \
    -Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver \
    --add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/java.io=ALL-UNNAMED \
    --add-opens java.base/java.util.zip=ALL-UNNAMED --add-opens java.base/sun.net=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-opens java.management/sun.management=ALL-UNNAMED \
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
    -cp "$(cat "$PULSAR_HOME/classpath.txt")" org.apache.pulsar.PulsarStandaloneStarter \
    --config "$dir/standalone.conf" -nfw -nss -a "$NODE_IP" \
    --metadata-dir "$dir/metadata" --bookkeeper-dir "$dir/bk"
}

start_versitygw() {
  pid_alive versitygw && return 0
  mkdir -p "$VTX_STATE/s3/root"
  start_bg versitygw env ROOT_ACCESS_KEY="$S3_ACCESS_KEY" ROOT_SECRET_KEY="$(secret s3)" \
    "$VERSITYGW_BIN/versitygw" --port "127.0.0.1:$S3_PORT" --port "$NODE_IP:$S3_PORT" --cors-allow-origin '*' \
    posix "$VTX_STATE/s3/root"
}

start_kubo() {
  pid_alive kubo && return 0
  if [ ! -s "$IPFS_PATH/config" ]; then
    ipfs init --profile=test --empty-repo >"$LOGS/kubo-init.log" 2>&1 || fail_part kubo-init "ipfs init failed"
    ipfs config --json Addresses.API "[\"/ip4/127.0.0.1/tcp/$KUBO_API_PORT\",\"/ip4/$NODE_IP/tcp/$KUBO_API_PORT\"]"
    ipfs config --json Addresses.Gateway "[\"/ip4/127.0.0.1/tcp/$KUBO_GATEWAY_PORT\",\"/ip4/$NODE_IP/tcp/$KUBO_GATEWAY_PORT\"]"
    ipfs config --json Addresses.Swarm '[]'
    ipfs config --json Gateway.NoFetch true
    ipfs config --json API.HTTPHeaders.Access-Control-Allow-Origin '["*"]'
  fi
  # The RPC answers only bearer tokens: vtx's (the whole RPC) and job pods' (add, nothing else).
  ipfs config --json API.Authorizations "{\"vtx\": {\"AuthSecret\": \"bearer:$(secret ipfs-rpc)\",
    \"AllowedPaths\": [\"/api/v0\"]}, \"jobrunner\": {\"AuthSecret\": \"bearer:$(secret ipfs-rpc-job)\",
    \"AllowedPaths\": [\"/api/v0/add\"]}}"
  start_bg kubo "$KUBO_BIN/ipfs" daemon --offline
}

# Prometheus scrapes vtx's API and operator wherever a release of the chart runs, found as the
# chart's ServiceMonitors find them (Services labelled part-of vtx, component api on port http and
# operator on port metrics), and evaluates the chart's alerting rules (the same file).
start_prometheus() {
  pid_alive prometheus && return 0
  local dir="$VTX_STATE/prometheus"
  mkdir -p "$dir/data"
  cp "$REPO_DIR/charts/vtx/files/prometheus-rules.yaml" "$dir/rules.yaml"
  cat >"$dir/prometheus.yml" <<YAML
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: vtx
    kubernetes_sd_configs:
      - role: endpointslice
        kubeconfig_file: $VTX_STATE/pki/prometheus.kubeconfig
    relabel_configs:
      - source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_part_of]
        regex: vtx
        action: keep
      - source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_component, __meta_kubernetes_endpointslice_port_name]
        regex: api;http|operator;metrics
        action: keep
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_instance]
        target_label: release
      - source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_component]
        target_label: component
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
YAML
  start_bg prometheus "$PROMETHEUS_BIN/prometheus" --config.file "$dir/prometheus.yml" \
    --storage.tsdb.path "$dir/data" --storage.tsdb.retention.time 2d \
    --web.listen-address "127.0.0.1:$PROMETHEUS_PORT" --log.level warn
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }
# curl signing S3 requests with an empty body (the server insists on the payload hash header).
s3curl() {
  curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$(secret s3)" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" "$@"
}
s3_ready() { s3curl -f -o /dev/null "http://$NODE_IP:$S3_PORT/"; }

create_topic() {
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT \
    "http://$NODE_IP:$PULSAR_HTTP_PORT/admin/v2/persistent/public/default/$1")
  [ "$code" = 204 ] || [ "$code" = 409 ]
}

case ${1:-} in
  start) start_postgres; start_pulsar; start_versitygw; start_kubo; start_prometheus ;;
  wait)
    wait_for postgres 60 pg_ready
    wait_for versitygw 30 s3_ready
    wait_for prometheus 60 curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
    wait_for kubo 60 curl -fsS -X POST -H "Authorization: Bearer $(secret ipfs-rpc)" \
      "http://127.0.0.1:$KUBO_API_PORT/api/v0/version"
    # The admin API answers before the standalone has made the public/default namespace.
    wait_for pulsar 120 sh -c "curl -fsS 'http://$NODE_IP:$PULSAR_HTTP_PORT/admin/v2/namespaces/public' | grep -F public/default"
    ;;
  bootstrap)
    # Database and role (idempotent).
    pw=$(secret postgres)
    runuser -u postgres -- "$PG_BIN/psql" -h "$PGRUN" -p "$PG_PORT" -v ON_ERROR_STOP=1 -qAt -d postgres >/dev/null <<SQL ||
SELECT 'CREATE ROLE $PG_USER LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER')\gexec
ALTER ROLE $PG_USER PASSWORD '$pw';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB')\gexec
SQL
      fail_part postgres "could not create the database and role"
    # Bucket (an existing one answers 409, which is fine).
    code=$(s3curl -o /dev/null -w '%{http_code}' -X PUT "http://$NODE_IP:$S3_PORT/$S3_BUCKET")
    case $code in 200|409) ;; *) fail_part versitygw "creating bucket $S3_BUCKET answered HTTP $code" ;; esac
    # Topics (an existing one answers 409). After a crash the embedded bookie takes a while to
    # register again, and until it does the broker cannot create a ledger: wait for that too.
    for topic in video-transcode-queue video-status-updates; do
      wait_for pulsar 120 create_topic "$topic"
    done
    # Selector-less Services so pods reach the servers by name (vtx-deps namespace).
    {
      echo "apiVersion: v1"
      echo "kind: Namespace"
      echo "metadata: {name: vtx-deps}"
      for svc in "postgres:$PG_PORT:postgres" "pulsar:$PULSAR_PORT:pulsar,$PULSAR_HTTP_PORT:http" \
                 "s3:$S3_PORT:s3" "ipfs:$KUBO_API_PORT:api,$KUBO_GATEWAY_PORT:gateway"; do
        name=${svc%%:*}; ports=${svc#*:}
        printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: vtx-deps}\nspec:\n  ports:\n' "$name"
        for p in ${ports//,/ }; do printf '  - {name: %s, port: %s, targetPort: %s, protocol: TCP}\n' "${p#*:}" "${p%%:*}" "${p%%:*}"; done
        printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: %s-host\n  namespace: vtx-deps\n  labels: {kubernetes.io/service-name: %s}\naddressType: IPv4\nendpoints:\n- addresses: ["%s"]\nports:\n' "$name" "$name" "$NODE_IP"
        for p in ${ports//,/ }; do printf -- '- {name: %s, port: %s, protocol: TCP}\n' "${p#*:}" "${p%%:*}"; done
      done
    } >"$VTX_STATE/deps.yaml"
    ;;
  *) die "usage: $0 start|wait|bootstrap" ;;
esac
