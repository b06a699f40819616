"""Access to the Kubernetes API: in-cluster credentials in a pod, the kubeconfig elsewhere."""

from __future__ import annotations

from kubernetes import config


def load_kube_config() -> None:
    """Configure the kubernetes client: the pod's ServiceAccount, else $KUBECONFIG."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
