"""Container kernels: the Jupyter provisioner, the relay a notebook's cells take, the shared
network holder, orphan sweeping and the kernelspecs that name them.

Import from the modules themselves: importing the package loads none of them, so that
``nbcontainers gc`` does not pay for jupyter_client and the provisioner.
"""

__all__: list[str] = []
