"""`%container snapshot` figures, in one run: snapshot time, image build time and size, and
the rebuild time after changing only a project file (layer cache), against the full build.

Usage: python bench/snapshot.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from notebook_kernel import local_kernel, printed

from nbcontainers.catalog.build import build_image
from nbcontainers.runtimes import get_runtime
from nbcontainers.snapshot import snapshot_image


def main() -> None:
    runtime = get_runtime()
    with tempfile.TemporaryDirectory() as cwd:
        Path(cwd, "analysis.py").write_text("print('v1')\n")
        with local_kernel(cwd) as kc:
            printed(kc, "%load_ext nbcontainers")
            printed(kc, "%container use python")
            printed(kc, "%pip install --quiet tomli-w==1.0.0")
            t0 = time.perf_counter()
            printed(kc, "%container snapshot env")
            t_snapshot = time.perf_counter() - t0
            printed(kc, "%container stop")
        folder = Path(cwd, "env")
        image = snapshot_image(folder)
        t0 = time.perf_counter()
        info = build_image(image, runtime)
        t_build = time.perf_counter() - t0
        (folder / "project" / "analysis.py").write_text("print('v2')\n")
        t0 = time.perf_counter()
        build_image(image, runtime)
        t_rebuild = time.perf_counter() - t0
        runtime.api.remove_image(image.ref, force=True)
    print(f"snapshot (capture + hashes + write): {t_snapshot:.1f} s")
    print(f"image build, cold cache: {t_build:.1f} s; size {info.size / 1e6:.0f} MB")
    print(
        f"rebuild after a project-file change: {t_rebuild:.1f} s "
        f"({t_rebuild / t_build:.2f} of the cold build)"
    )


if __name__ == "__main__":
    main()
