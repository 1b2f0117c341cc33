"""JupyterHub with nbcontainers container kernels on each user's own rootless Podman.

Run as root, after `nbcontainers hub setup` (see README.md next to this file):

    jupyterhub -f examples/hub/jupyterhub_config.py

Users log in with their Unix account (PAM); each gets a single-user server running as that
user (LocalProcessSpawner) whose kernel picker lists the `nbc-*` container kernels. A kernel
runs on the user's own rootless Podman, started on demand, with the catalog images from the
shared read-only store; nobody needs the Docker socket. Override anything below in a file of
your own that starts with `load_subconfig("/path/to/this/jupyterhub_config.py")`.
"""

import os
import sys
from pathlib import Path

c = get_config()  # type: ignore[name-defined]  # noqa: F821 (JupyterHub provides it)

# The environment JupyterHub runs from; users' servers run the same one (it must be readable
# and executable by them: a system-wide venv such as /opt/jupyterhub, not one under /root).
BIN = Path(sys.executable).parent

# -- Who gets in -------------------------------------------------------------------------------
c.JupyterHub.authenticator_class = "pam"
# Any local account with a password may log in. Narrow it with, e.g.,
#   c.Authenticator.allowed_groups = {"jupyterhub-users"}   (and allow_all = False)
c.Authenticator.allow_all = True
c.Authenticator.admin_users = set()
c.Authenticator.delete_invalid_users = True

# -- Where it listens (put TLS in front of it, or set ssl_cert/ssl_key) ------------------------
c.JupyterHub.bind_url = os.environ.get("NBC_HUB_BIND_URL", "http://:8000")

# -- Users' servers: one process per user, as that Unix user -----------------------------------
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60
# The venv first (jupyter, nbcontainers), then the system tools the rootless engine needs
# (podman, newuidmap, slirp4netns). The server's own token never reaches a kernel: the
# provisioner passes an allowlist of variables only.
c.Spawner.environment = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin"}
# Container kernels on the user's own engine: "auto" means DOCKER_HOST if the user set one,
# else the user's rootless engine (Podman, started on demand), else the system engine, which a
# user outside the docker group cannot open.
# A warm pool: one idle kernel container per image (and user, mounts, settings) is kept
# started, its kernel started up to the user's code, so opening a notebook on nbc-python takes
# ~0.025 s instead of ~0.3 s; an idle one costs about 36 MiB. The warmup extension fills
# nbc-python's pool as the user's server starts, so even the first notebook gets a pooled
# kernel. %container use in a notebook reads NBCONTAINERS_POOL_SIZE and _WARM.
c.Spawner.args = [
    # Kernels on ipc: their ZeroMQ sockets are files in the user's 0700 Jupyter runtime folder
    # (~/.local/share/jupyter/runtime, made 0700 by Jupyter), which no other user can open.
    # On TCP (Jupyter's default) every user of this host could subscribe to 127.0.0.1:<port>
    # and read every output of every notebook (the connection key signs, it doesn't hide),
    # those `%container use` relays included. Container kernels are on ipc too
    # (ContainerProvisioner.transport's default, in a 0700 folder of their own).
    "--KernelManager.transport=ipc",
    "--ContainerProvisioner.transport=ipc",
    "--ContainerProvisioner.runtime_name=auto",
    "--ContainerProvisioner.pool_size=1",
    "--ContainerProvisioner.pool_warm=nbc-python",
    "--ServerApp.jpserver_extensions=nbcontainers.kernels.warmup=True",
    # The JupyterLab view's API (/api/nbcontainers/kernels). A wheel enables it by a config
    # file; a checkout installed with `pip install -e` has none. Entries of this option merge.
    "--ServerApp.jpserver_extensions=nbcontainers.lab=True",
]
c.Spawner.environment["NBCONTAINERS_POOL_SIZE"] = "1"
c.Spawner.environment["NBCONTAINERS_POOL_WARM"] = "python"  # filled at %load_ext nbcontainers

# -- Per-user totals ---------------------------------------------------------------------------
# The policy's user_* totals live in each user's systemd slice. Where systemd runs and
# jupyterhub-systemdspawner is installed, servers (with their engine and kernels) start in that
# slice; elsewhere this changes nothing and prints that the totals are not enforced here.
from nbcontainers.hub.slices import use_user_slices  # noqa: E402

use_user_slices(c)
# Each user's rootless engine exits after this many idle seconds and starts again on demand.
c.Spawner.environment["NBCONTAINERS_PODMAN_IDLE"] = "600"

# -- Housekeeping ------------------------------------------------------------------------------
c.JupyterHub.cleanup_servers = True  # stopping the hub stops users' servers (and kernels)
c.JupyterHub.shutdown_on_logout = False
