"""The JupyterLab / Notebook 7 surface: a Jupyter Server extension whose REST API lists the
user's container kernels with their image, engine, memory, CPU and GPUs (handlers.py), and
the prebuilt front end in ``labextension/`` beside it (built from the repository's
``labextension/`` folder by ``scripts/build-labextension.sh``).

Enabled by ``jupyter_server_config.d/nbcontainers.json`` from the wheel, or by hand:
``jupyter server extension enable nbcontainers.lab``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["LABEXTENSION", "LABEXTENSION_NAME"]

LABEXTENSION_NAME = "nbcontainers-lab"
LABEXTENSION = Path(__file__).resolve().parent.parent / "labextension"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbcontainers.lab"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # For `jupyter labextension develop`; an installed wheel puts the same folder under
    # share/jupyter/labextensions, where JupyterLab finds it.
    return [{"src": str(LABEXTENSION), "dest": LABEXTENSION_NAME}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the handlers; nothing is asked of an engine until the first request."""
    from ..runtimes import shared_runtime
    from .collect import Collector
    from .handlers import handlers

    name = serverapp.config.get("ContainerProvisioner", {}).get("runtime_name", "auto")
    collector = Collector(serverapp, lambda: shared_runtime(str(name)))
    web_app = serverapp.web_app
    web_app.settings["nbcontainers_collector"] = collector
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))
    serverapp.log.info("nbcontainers: container kernels at /api/nbcontainers/kernels")
