#!/usr/bin/env bash
# Builds the vtx images with podman and imports them into the cluster's containerd:
#   localhost/vtx-job:<version>       (Dockerfile.job)
#   localhost/vtx-operator:<version>  (Dockerfile.operator)
# The debian:bookworm-slim base comes from debootstrap (cached); Python packages come from a
# wheelhouse of the lock file built on the host (pip cannot reach the registry inside a build).
. "$(dirname "$0")/lib.sh"
export PATH="$STACK_PATH:$PATH"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_DIR/pyproject.toml")
TAG="${VTX_IMAGE_TAG:-$VERSION}"
BASE=docker.io/library/debian:$DEBIAN_SUITE-slim
PY="$REPO_DIR/.venv/bin/python"
# The base image's file tree, made once with debootstrap and cached as a tarball.
base_tarball() {
  tarball="$VTX_CACHE/images/debian-$DEBIAN_SUITE-minbase.tar"
  [ -s "$tarball" ] && return 0
  log "making the $BASE base image with debootstrap (~1 min)"
  mkdir -p "$VTX_CACHE"
  local root
  root=$(mktemp -d "$VTX_CACHE/debootstrap.XXXXXX")
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" http://deb.debian.org/debian >"$VTX_CACHE/debootstrap.log" 2>&1 ||
    { tail -n 20 "$VTX_CACHE/debootstrap.log"; die "debootstrap failed (log: $VTX_CACHE/debootstrap.log)"; }
  cat >"$root/etc/apt/sources.list" <<LIST
deb http://deb.debian.org/debian $DEBIAN_SUITE main
deb http://deb.debian.org/debian $DEBIAN_SUITE-updates main
deb http://deb.debian.org/debian-security $DEBIAN_SUITE-security main
LIST
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  mkdir -p "$(dirname "$tarball")"
  tar -C "$root" -c . >"$tarball.part" && mv "$tarball.part" "$tarball"
  rm -rf "$root"
}

# The locked wheels for the images (cached per lock file): pip cannot reach the registry inside
# a build.
fill_wheelhouse() {
  local lockhash
  lockhash=$(sha256sum "$REPO_DIR/requirements.lock" | cut -c1-16)
  wheels="$VTX_CACHE/wheels/$lockhash"
  [ -f "$wheels/.complete" ] && return 0
  log "filling the wheelhouse from requirements.lock"
  rm -rf "$wheels"; mkdir -p "$wheels"
  grep -vE '^\s*(#|$)' "$REPO_DIR/requirements.lock" | sed 's/ *#.*//' >"$wheels/requirements.lock"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
    --platform any --implementation cp --abi cp311 --abi abi3 --abi none \
    -d "$wheels" -r "$wheels/requirements.lock" || die "could not download the locked wheels"
  touch "$wheels/.complete"
}

podman_ready() {
  # podman's default ulimits are higher than this machine lets a process raise them.
  if ! grep -qs default_ulimits /etc/containers/containers.conf; then
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n' >>/etc/containers/containers.conf
  fi
  if ! podman image exists "$BASE"; then
    base_tarball
    podman import "$tarball" "$BASE" >/dev/null
  fi
}

# Build context: the locked wheels and the vtx wheel.
build_context() {
  ctx="$REPO_DIR/build/image-context"
  fill_wheelhouse
  rm -rf "$ctx"; mkdir -p "$ctx/wheels/vtx"
  cp -r "$wheels" "$ctx/wheels/deps"
  "$REPO_DIR/.venv/bin/uv" build -q --wheel -o "$ctx/wheels/vtx" "$REPO_DIR" || die "could not build the vtx wheel"
}

build_image() { # NAME: podman build of Dockerfile.NAME (its layers cached by podman)
  local name=$1
  img="localhost/vtx-$name:$TAG"
  log "building $img"
  mkdir -p "$VTX_STATE/logs"
  podman build -q --network=host -f "$REPO_DIR/Dockerfile.$name" -t "$img" "$ctx" >"$VTX_STATE/logs/image-$name.log" 2>&1 ||
    { tail -n 30 "$VTX_STATE/logs/image-$name.log"; die "building $img failed"; }
}

# `dev/images.sh prefetch`: the base image, the wheels and a first build of both images, without
# the cluster (run beside the builds of `make up`; the build after it reuses podman's layers).
if [ "${1:-}" = prefetch ]; then
  base_tarball
  if [ -x "$PY" ] && ! { podman image exists "localhost/vtx-job:$TAG" && podman image exists "localhost/vtx-operator:$TAG"; }; then
    podman_ready
    build_context
    for name in job operator; do build_image "$name"; done
  fi
  exit 0
fi

[ -S "$CONTAINERD_SOCK" ] || die "the cluster's containerd is not running: run make up first"
podman_ready
build_context

ctr_images() { local sock=$1; shift; ctr --address "$sock" -n k8s.io images "$@"; }
for name in job operator; do
  build_image "$name"
  id=$(podman image inspect --format '{{.Id}}' "$img")
  tmp="$VTX_STATE/images/vtx-$name.tar"
  for sock in $(node_sockets); do
    mark="$VTX_STATE/images/vtx-$name.$(basename "$(dirname "$sock")").id"
    if [ "$(cat "$mark" 2>/dev/null)" = "$id" ] && ctr_images "$sock" ls -q | grep -x "$img" >/dev/null; then
      continue
    fi
    log "importing $img into the containerd at $sock"
    mkdir -p "$VTX_STATE/images"
    [ -s "$tmp" ] || podman save -q --format oci-archive -o "$tmp" "$img"
    ctr_images "$sock" import --base-name "localhost/vtx-$name" "$tmp" >/dev/null
    echo "$id" >"$mark"
  done
  rm -f "$tmp"
done
log "images ready: localhost/vtx-job:$TAG localhost/vtx-operator:$TAG"
stage_took images 0
