#!/usr/bin/env bash
# The main job on the local stack: a Job in the cluster transcodes a generated clip with FFmpeg
# in the vtx-job image and stores the rendition in S3.
. "$(dirname "$0")/lib.sh"
export PATH="$STACK_PATH:$PATH"
# shellcheck disable=SC1091
. "$VTX_STATE/env"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_DIR/pyproject.toml")
NS=vtx-demo
JOB=demo-transcode-$(date +%s)

kctl create namespace "$NS" --dry-run=client -o yaml | kctl apply -f - >/dev/null
kctl -n "$NS" create secret generic storage --dry-run=client -o yaml \
  --from-literal=AWS_ACCESS_KEY_ID="$VTX_S3_ACCESS_KEY" --from-literal=AWS_SECRET_ACCESS_KEY="$VTX_S3_SECRET_KEY" |
  kctl apply -f - >/dev/null

log "running Job $NS/$JOB: generate a 10 s 1080p clip, transcode it to 720p H.264/AAC, store it in S3"
kctl apply -f - >/dev/null <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: $JOB, namespace: $NS}
spec:
  backoffLimit: 1
  activeDeadlineSeconds: 600
  ttlSecondsAfterFinished: 3600
  template:
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      containers:
      - name: transcode
        image: localhost/vtx-job:$VERSION
        imagePullPolicy: Never
        envFrom: [{secretRef: {name: storage}}]
        env:
        - {name: S3_ENDPOINT, value: "http://s3.vtx-deps.svc.cluster.local:7070"}
        - {name: S3_KEY, value: "demo/$JOB/720p.mp4"}
        command: [python, -c]
        args:
        - |
          import boto3, subprocess, os, json
          src, out = "/scratch/source.mp4", "/scratch/720p.mp4"
          subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "10", "-c:v", "libx264", "-preset", "veryfast",
            "-c:a", "aac", "-shortest", src], check=True)
          subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", src, "-vf", "scale=-2:720", "-c:v", "libx264",
            "-preset", "veryfast", "-b:v", "2800k", "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", out], check=True)
          s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1")
          s3.upload_file(out, "$VTX_S3_BUCKET", os.environ["S3_KEY"])
          print(json.dumps({"stored": os.environ["S3_KEY"], "bytes": os.path.getsize(out)}))
        securityContext:
          runAsNonRoot: true
          runAsUser: 10001
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
        resources: {limits: {cpu: "2", memory: 1Gi}}
        volumeMounts: [{name: scratch, mountPath: /scratch}]
      volumes: [{name: scratch, emptyDir: {sizeLimit: 1Gi}}]
YAML

deadline=$((SECONDS + 600))
while :; do
  state=$(kctl -n "$NS" get job "$JOB" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {end}')
  case $state in *Complete=True*) break ;; *Failed=True*) kctl -n "$NS" logs "job/$JOB" >&2 || true; die "Job $JOB failed" ;; esac
  [ "$SECONDS" -lt "$deadline" ] || die "Job $JOB did not finish within 600s"
  sleep 2
done
kctl -n "$NS" logs "job/$JOB"
key="demo/$JOB/720p.mp4"
url=$("$REPO_DIR/.venv/bin/python" - "$key" <<'PY'
import sys
from vtx.core.objects import s3_client
from vtx.core.settings import Settings
s = Settings.from_env()
print(s3_client(s, public=True).generate_presigned_url("get_object", Params={"Bucket": s.s3_bucket, "Key": sys.argv[1]}, ExpiresIn=3600))
PY
)
log "the rendition, as ffprobe reads it from S3:"
ffprobe -v error -show_entries stream=codec_name,width,height:format=duration -of compact "$url"
log "download it (valid 1 h): $url"
