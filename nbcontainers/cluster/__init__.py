"""Kubernetes deployment: the manifests and Zero to JupyterHub values that let notebook
servers start kernels as pods (``nbcontainers k8s manifests``)."""

__all__: list[str] = []
