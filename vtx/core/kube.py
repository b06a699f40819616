"""Access to the Kubernetes API: in-cluster credentials in a pod, the kubeconfig elsewhere."""

from __future__ import annotations

import os

from kubernetes import config


def load_kube_config() -> None:
    """Configure the kubernetes client: the pod's ServiceAccount, else $KUBECONFIG."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        # $KUBECONFIG as it is now: the client reads it once, when first imported.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]
