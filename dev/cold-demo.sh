#!/usr/bin/env bash
# Measures `make demo` as a fresh machine runs it: a fresh clone of this repository, run with a
# new, empty HOME (so no Go module or build cache, no Maven repository, no pip or uv cache and no
# ~/.cache/vtx), no Go on PATH, and no podman images (the base image is made again). Debian's
# packages stay installed (apt cannot be undone here): a truly fresh machine adds their download
# and install. Stops the stack of this checkout first (one stack per machine).
# Usage: dev/cold-demo.sh [WORK_DIR]   (default /tmp/vtx-cold; removed first)
. "$(dirname "$0")/lib.sh"
work="${1:-/tmp/vtx-cold}"
"$DEV_DIR/down.sh"
rm -rf "$work"; mkdir -p "$work/home"
git clone -q "$REPO_DIR" "$work/vtx"
podman rmi -a -f >/dev/null 2>&1 || true
path=$(path_without_go)
log "cold make demo in $work/vtx (HOME=$work/home)"
start=$SECONDS
(cd "$work/vtx" && env -u VTX_CACHE -u VTX_STATE -u GOPATH -u GOMODCACHE -u GOCACHE \
  HOME="$work/home" PATH="$path" make demo) 2>&1 | tee "$work/demo.log"
rc=${PIPESTATUS[0]}
log "cold make demo: exit $rc after $((SECONDS - start))s (log: $work/demo.log)"
exit "$rc"
