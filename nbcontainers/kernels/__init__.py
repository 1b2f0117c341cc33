"""Container kernels: the Jupyter provisioner, the relay a notebook's cells take, the shared
network holder, orphan sweeping and the kernelspecs that name them."""

__all__: list[str] = []
