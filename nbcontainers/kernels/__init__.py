"""Container kernels: the Jupyter provisioner and what it decides with (the launch plan, the
admin's policy, the warm pool), the shared network holder and orphan sweeping.

Import from the modules themselves: importing the package loads none of them, so that
``nbcontainers gc`` does not pay for jupyter_client and the provisioner.
"""

__all__: list[str] = []
