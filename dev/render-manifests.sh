#!/usr/bin/env bash
# Renders the Helm chart with its default values into plain manifests for `kubectl apply`:
#   <out>/vtx.yaml   everything the chart installs in namespace vtx (release vtx)
#   <out>/crds/      the CRDs, as in crds/
# Usage: dev/render-manifests.sh [OUT_DIR]   (default: manifests/)
# The output holds no random values and no timestamps, so rendering twice gives the same bytes;
# tests/unit/test_chart.py checks that manifests/ is what this script renders now.
. "$(dirname "$0")/lib.sh"
out="${1:-$REPO_DIR/manifests}"
helm="${HELM:-$HELM_BIN/helm}"
[ -x "$helm" ] || helm=$(command -v helm) || die "helm is not built: run make up (it builds $HELM_BIN/helm)"

mkdir -p "$out/crds"
rm -f "$out"/crds/*.yaml
cp "$REPO_DIR"/crds/*.yaml "$out/crds/"
{
  echo "# Rendered from charts/vtx with its default values by dev/render-manifests.sh; do not edit."
  echo "# Create the namespace and the Secrets named in charts/vtx/values.yaml first (docs/helm.md):"
  echo "#   kubectl apply --server-side -f manifests/crds/"
  echo "#   kubectl create namespace vtx"
  echo "#   kubectl apply -f manifests/vtx.yaml"
  # The chart's own kubeVersion check needs a version; this is the one the local stack runs.
  # The CRDs are in crds/ beside it, applied once with kubectl (crds.install=false).
  "$helm" template vtx "$REPO_DIR/charts/vtx" --namespace vtx --kube-version "${K8S_VERSION#v}" \
    --set crds.install=false --skip-tests
} >"$out/vtx.yaml.part"
mv "$out/vtx.yaml.part" "$out/vtx.yaml"
