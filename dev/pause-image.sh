#!/usr/bin/env bash
# The pod sandbox ("pause") image, built here: a static program that sleeps until told to stop.
. "$(dirname "$0")/lib.sh"
IMG=localhost/pause:3.10
SOCK=${1:-$CONTAINERD_SOCK}  # the containerd to import it into (a node's)
if ctr --address "$SOCK" -n k8s.io images ls -q | grep -x "$IMG" >/dev/null; then exit 0; fi
dir="$VTX_CACHE/images/pause"
mkdir -p "$dir/root"
if [ ! -s "$dir/pause.tar" ]; then
  cat >"$dir/pause.c" <<'C'
#include <signal.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
int main(void) {
  signal(SIGTERM, stop); signal(SIGINT, stop);
  for (;;) pause();
}
C
  gcc -static -O2 -o "$dir/root/pause" "$dir/pause.c"
  podman image exists "$IMG" ||
    tar -C "$dir/root" -c pause | podman import --change 'ENTRYPOINT ["/pause"]' - "$IMG" >/dev/null
  podman save -q --format oci-archive -o "$dir/pause.tar.part" "$IMG"
  mv "$dir/pause.tar.part" "$dir/pause.tar"
fi
ctr --address "$SOCK" -n k8s.io images import --base-name localhost/pause "$dir/pause.tar" >/dev/null
ctr --address "$SOCK" -n k8s.io images ls -q | grep -x "$IMG" >/dev/null || die "pause image did not import into containerd"
