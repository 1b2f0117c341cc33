"""The export theme: `%export-serving` (also `%export_serving`) ships a model from the
notebook as a tested serving image; its options are those of `nbcontainers export`
(:mod:`nbcontainers.serving.options`)."""

from __future__ import annotations

import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class

from ..errors import NbcontainersError
from ..serving.options import add_arguments, export_options
from .missing import showing
from .parser import UsageParser
from .state import NotebookState

__all__ = ["MAGIC_NAMES", "ExportMagics", "export_parser"]

# "export-serving" is no Python name (no decorator can give it), so the instance adds both.
MAGIC_NAMES = ("export-serving", "export_serving")


def export_parser() -> UsageParser:
    """NAME and the shared export options."""
    parser = UsageParser(prog="%export-serving", add_help=False)
    parser.add_argument("name")
    add_arguments(parser)
    return parser


@magics_class
class ExportMagics(Magics):
    """Exports from the active container kernel, else from the notebook's own kernel."""

    def __init__(self, shell: Any, state: NotebookState) -> None:
        super().__init__(shell)
        self.state = state
        self.magics["line"].update({name: self.export_serving for name in MAGIC_NAMES})

    def export_serving(self, line: str) -> Any:
        """Ship a model from this notebook as a tested serving image.

        %export-serving NAME --example EXPR [--dir DIR] [--image REF] [--gpu|--cpu]
                        [--format auto|torch.export|safetensors|skops|source|pickle]
                        [--method predict_proba] [--init-args JSON]
                        [--no-build] [--run [--port P]] [--push REGISTRY]

        NAME is a torch nn.Module, a scikit-learn estimator or pipeline, or a function, in the
        active container kernel (after `%container use`) or else in this notebook. EXPR is an
        example batch (e.g. X_test[:4]): it gives the input signature, and after the build a
        smoke test sends it to the image and checks the answer equals the notebook's; on it
        the export also proves each row's answer independent of the other rows in its batch,
        else the server never batches requests together (the export says which).
        Writes DIR (default ./serving-NAME): Dockerfile, requirements.lock, model/, server/,
        compose.yaml, k8s/ and kserve.yaml. The server speaks the Open Inference Protocol v2
        (/v2/models/NAME/infer), plain JSON (/predict), /openapi.json and /metrics.
        --run leaves it running on 127.0.0.1 and returns a handle with .url, .predict(rows)
        and .stop(). Pickle is used only with --format pickle.
        """
        from ..runtimes import get_runtime
        from ..serving.export import export

        try:
            args, extra = export_parser().parse_known_args(shlex.split(line))
            if extra and args.example and not any(e.startswith("-") for e in extra):
                # An unquoted example with spaces, `--example X[:4, :2]`, arrives in pieces.
                args.example = " ".join([args.example, *extra])
            elif extra:
                raise UsageError(f"%export-serving: unrecognized arguments: {' '.join(extra)}.")
            options = export_options(
                vars(args), example=args.example, source=self.state.notebook_path()
            )
        except ValueError as exc:  # shlex's unbalanced quotes, --init-args that isn't JSON
            raise UsageError(f"%export-serving: {exc}") from None
        try:
            evaluate, work_dir = self.state.evaluator()
            with showing(
                self.shell,
                f"Exporting {args.name}.",
                f"Exported {args.name}",
                what="export",
                undone="a build under way was stopped and left no image",
            ) as progress:
                result = export(
                    evaluate,
                    args.name,
                    options,
                    work_dir=work_dir,
                    runtime=get_runtime(),
                    on_build=progress.build_event,
                )
        except NbcontainersError as exc:
            raise UsageError(str(exc)) from None
        # Only --run has something to hand back: the running server's handle.
        return result if args.run else None
