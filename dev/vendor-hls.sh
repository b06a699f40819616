#!/usr/bin/env bash
# Vendors the hls.js player library into the dashboard: vtx/api/static/vendor/ gets the ESM
# build (hls.min.mjs), its LICENSE and a VERSION file (the version, then the npm integrity of
# the tarball it came from). The page has no build step and loads nothing from the internet.
# Usage: dev/vendor-hls.sh [VERSION]   (default: the version pinned below)
# To move to a newer release: `npm view hls.js version`, then run this with it, change the pin
# below, and check the dashboard with `.venv/bin/pytest tests/browser`.
set -euo pipefail

HLS_VERSION="${1:-1.7.4}"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$REPO_DIR/vtx/api/static/vendor"
DIST_FILE=hls.min.mjs

die() { echo "vendor-hls: $*" >&2; exit 1; }
command -v npm >/dev/null || die "npm is needed (apt-get install npm)"
[[ "$HLS_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "'$HLS_VERSION' is not a release version"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

expected="$(npm view "hls.js@$HLS_VERSION" dist.integrity)"
[[ "$expected" == sha512-* ]] || die "the registry gave no sha512 integrity for hls.js@$HLS_VERSION"
tarball="$(cd "$work" && npm pack --silent "hls.js@$HLS_VERSION")"
actual="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
[ "$actual" = "$expected" ] ||
  die "$tarball has integrity $actual; the registry announces $expected"

tar -xzf "$work/$tarball" -C "$work"
[ -f "$work/package/dist/$DIST_FILE" ] || die "hls.js@$HLS_VERSION has no dist/$DIST_FILE"
mkdir -p "$DEST"
install -m 0644 "$work/package/dist/$DIST_FILE" "$DEST/$DIST_FILE"
install -m 0644 "$work/package/LICENSE" "$DEST/LICENSE"
printf '%s\n%s\n' "$HLS_VERSION" "$expected" >"$DEST/VERSION"
echo "vendor-hls: hls.js $HLS_VERSION ($expected) -> ${DEST#"$REPO_DIR"/}/$DIST_FILE"
