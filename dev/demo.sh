#!/usr/bin/env bash
# The main job, as a platform team runs vtx: `helm install` into the local cluster with Secrets
# for the local servers, then a sample clip uploaded through the installed API with the REST
# flow (announce, PUT to storage, complete), and the wait until it is Ready. Prints the
# resources, the playback URLs and the dashboard URL; exits non-zero naming the failed step.
. "$(dirname "$0")/lib.sh"
export PATH="$STACK_PATH:$PATH"
# shellcheck disable=SC1091
. "$VTX_STATE/env"
NS=${VTX_DEMO_NAMESPACE:-vtx}
RELEASE=vtx
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_DIR/pyproject.toml")
TAG="${VTX_IMAGE_TAG:-$VERSION}"
API="http://$NODE_IP:30080"
DEPS=vtx-deps.svc.cluster.local
started=$SECONDS

step() { log "$*"; }
fail() { die "$1$(printf '\n%s' "${2:-}")"; }

# --- Secrets: credentials by reference, never in the chart or its values --------------------
step "namespace $NS and the Secrets the chart names (from this stack's credentials)"
kctl create namespace "$NS" --dry-run=client -o yaml | kctl apply -f - >/dev/null
# Every pod of vtx (API, operator, job pods, the helm test) passes the restricted Pod Security
# Standard; the namespace enforces it.
kctl label --overwrite namespace "$NS" pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/enforce-version=latest pod-security.kubernetes.io/warn=restricted >/dev/null
# Values go through stdin, never as arguments: process lists and shell traces do not show them.
secret() { # NAME, then KEY=VALUE lines on stdin
  kctl -n "$NS" create secret generic "$1" --from-env-file=/dev/stdin --dry-run=client -o yaml |
    kctl apply -f - >/dev/null
}
printf 'url=%s\n' "${VTX_DATABASE_URL/@127.0.0.1:/@postgres.$DEPS:}" | secret vtx-database
printf 'accessKey=%s\nsecretKey=%s\n' "$VTX_S3_ACCESS_KEY" "$VTX_S3_SECRET_KEY" | secret vtx-storage
printf 'url=%s\n' "pulsar://pulsar.$DEPS:$PULSAR_PORT" | secret vtx-pulsar
printf 'tokens=%s\n' "$VTX_API_TOKENS" | secret vtx-api
printf 'token=%s\n' "$VTX_IPFS_API_TOKEN" | secret vtx-ipfs
printf 'token=%s\n' "$VTX_IPFS_JOB_TOKEN" | secret vtx-ipfs-job
# The plain token `helm test` uploads with (its SHA-256 is in vtx-api/tokens).
printf 'token=%s\n' "$VTX_API_TOKEN" | secret vtx-api-test

# --- helm install -----------------------------------------------------------------------------
# Same tag, new build: the images' ids go into pod annotations so that a rebuild rolls the pods.
ids="$VTX_STATE/demo-values.yaml"
{
  echo "image: {tag: \"$TAG\"}"
  echo "jobrunner: {image: {tag: \"$TAG\"}}"
  echo "api: {podAnnotations: {vtx.dev/image-id: \"$(cat "$VTX_STATE/images/vtx-operator.id" 2>/dev/null)\"}}"
  echo "operator: {podAnnotations: {vtx.dev/image-id: \"$(cat "$VTX_STATE/images/vtx-operator.id" 2>/dev/null)\"}}"
} >"$ids"
t_install=$SECONDS
step "helm upgrade --install $RELEASE charts/vtx (values-local.yaml)"
# --take-ownership: the CRDs may already be in the cluster, applied with kubectl (the stack's
# tests do) or left by an earlier release; the release takes them over and upgrades them.
helm upgrade --install "$RELEASE" "$REPO_DIR/charts/vtx" -n "$NS" --take-ownership \
  -f "$REPO_DIR/charts/vtx/values-local.yaml" -f "$ids" --wait --timeout 5m >"$VTX_STATE/logs/demo-helm.log" 2>&1 ||
  fail "helm install failed" "$(tail -n 20 "$VTX_STATE/logs/demo-helm.log"; kctl -n "$NS" get pods 2>&1)"
wait_for "the installed API at $API" 120 curl -fsS "$API/readyz"
stage_took helm-install "$t_install"
t_test=$SECONDS
step "helm test $RELEASE: a 2 s clip uploaded through the installed API, Ready, read back, deleted"
helm test "$RELEASE" -n "$NS" --timeout 12m --logs >"$VTX_STATE/logs/demo-helm-test.log" 2>&1 ||
  fail "helm test failed" "$(tail -n 30 "$VTX_STATE/logs/demo-helm-test.log")"
sed -n 's/^\(  .*\|video .*\|the .*\|vtx smoke: .*\)$/    \1/p' "$VTX_STATE/logs/demo-helm-test.log" >&2

stage_took helm-test "$t_test"
t_clip=$SECONDS

# --- a sample clip, through the REST flow ------------------------------------------------------
clip="$VTX_STATE/demo/sample-1080p.mp4"
if [ ! -s "$clip" ]; then
  mkdir -p "$(dirname "$clip")"
  step "making a 10 s 1080p sample clip with FFmpeg"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1920x1080:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 10 -c:v libx264 -preset veryfast \
    -pix_fmt yuv420p -c:a aac -b:a 128k -movflags +faststart "$clip.part.mp4" && mv "$clip.part.mp4" "$clip"
fi
auth=(-H "Authorization: Bearer $VTX_API_TOKEN")
size=$(stat -c %s "$clip")
step "POST $API/v1/videos ($size bytes)"
created=$(curl -fsS "${auth[@]}" -H 'Content-Type: application/json' "$API/v1/videos" \
  -d "{\"file_name\": \"sample-1080p.mp4\", \"size\": $size, \"content_type\": \"video/mp4\", \"title\": \"vtx demo\"}") ||
  fail "the API refused the upload"
id=$(jq -r .id <<<"$created")
url=$(jq -r .upload.url <<<"$created")
step "PUT the bytes straight to storage (presigned URL)"
curl -fsS -X PUT -T "$clip" -H "Content-Type: video/mp4" "$url" >/dev/null || fail "the upload to storage failed"
step "POST $API/v1/videos/$id/complete"
curl -fsS "${auth[@]}" -X POST -H 'Content-Type: application/json' -d '{}' "$API/v1/videos/$id/complete" >/dev/null ||
  fail "completing the upload failed"

# --- wait until Ready ---------------------------------------------------------------------------
deadline=$((SECONDS + ${VTX_DEMO_TIMEOUT:-900}))
last=""
while :; do
  video=$(curl -fsS "${auth[@]}" "$API/v1/videos/$id") || fail "reading the video failed"
  phase=$(jq -r '.phase // "Pending"' <<<"$video")
  line="$phase $(jq -r '.progress' <<<"$video")% $(jq -r '[.renditions | to_entries[] | "\(.key) \(.value.progress)%"] | join(", ")' <<<"$video")"
  [ "$line" != "$last" ] && log "  $line"
  last=$line
  case $phase in
    Ready) break ;;
    Failed) fail "the transcode failed: $(jq -r .failure_reason <<<"$video")" "$(kctl -n "$NS" describe vt "v-$id" | tail -n 20)" ;;
  esac
  [ "$SECONDS" -lt "$deadline" ] || fail "v-$id was not Ready in time" "$(kctl -n "$NS" get vt,jobs,pods 2>&1)"
  sleep 2
done

hls=$(jq -r .playback.hls <<<"$video")
ipfs=$(jq -r .playback.ipfs <<<"$video")
step "what ffprobe reads from each playback URL:"
for u in "$hls" "$ipfs"; do
  # Reads are closed (the chart's default): the API's playlists want the token too.
  report=$(ffprobe -v error -print_format json -show_format -show_streams \
    -protocol_whitelist http,https,tcp,tls,crypto \
    -headers "Authorization: Bearer $VTX_API_TOKEN"$'\r\n' "$u") || fail "$u does not play"
  jq -r '"    \(.format.duration | tonumber | floor) s, video \([.streams[] | select(.codec_type == "video") | "\(.width)x\(.height)"] | unique | join(" ")), audio \([.streams[] | select(.codec_type == "audio") | .codec_name] | unique | join(" "))"' <<<"$report"
done
step "vtx verify $id: its rows, its objects in S3, its IPFS directory and its resource agree"
"$REPO_DIR/.venv/bin/vtx" verify "$id" || fail "vtx verify found the video incomplete"
echo
kctl -n "$NS" get vt
kctl -n "$NS" wait --for=condition=Ready "vt/v-$id" --timeout 10s >/dev/null ||
  fail "kubectl wait --for=condition=Ready vt/v-$id did not see Ready"
cat <<EOF

  HLS from S3 (signed playlists): $hls
  HLS from IPFS (root CID $(jq -r .cid <<<"$video")): $ipfs
  MP4s:           $(jq -r '[.renditions[].mp4] | join("\n                  ")' <<<"$video")
  Dashboard:      $API/   (token: eval "\$(make -s env)"; echo \$VTX_API_TOKEN)
  Prometheus:     http://127.0.0.1:$PROMETHEUS_PORT/   (vtx's metrics and alerts: /api/v1/rules, /api/v1/alerts)
  Watch:          kubectl -n $NS get vt -w
  Wait for one:   kubectl -n $NS wait --for=condition=Ready vt/v-$id

EOF
stage_took transcode "$t_clip"
log "demo done in $((SECONDS - started))s"
