"""Whether a model's rows are independent, proven on the example in the kernel that holds it:
the server may put different clients' rows into one model call only if a row's answer is the
same alone, in the whole example, in another order and next to other neighbours.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .examples import outputs, same

__all__ = [
    "rows_independent",
]

# Rows checked one by one: enough to catch a model that mixes rows, few enough to stay fast
# on a large example.
_MAX_ROWS = 8


def rows_independent(call: Callable[[Any], Any], inputs: Any, frame: bool) -> tuple[bool, str]:
    """Whether ``call`` answers each row of ``inputs`` independently of the other rows in
    its batch, and why not when it does not (a sentence for the export's output)."""
    n = len(inputs)
    if n < 2:
        return False, (
            "the example has one row, so row independence cannot be shown; export with an "
            "example of several rows to let the server batch requests"
        )
    take = _take_frame if frame else _take_array
    try:
        whole = outputs(call(inputs))
        if not all(o.ndim >= 1 and len(o) == n for o in whole):
            return False, "the model's outputs do not have one row per input row"
        checked = list(range(min(n, _MAX_ROWS)))
        for i in checked:
            if not same(_rows(whole, [i]), outputs(call(take(inputs, [i])))):
                return False, f"row {i} answers differently alone than in the example's batch"
        # Reversed and rotated: each row gets other neighbours and another position.
        for order in (list(range(n))[::-1], [*range(1, n), 0]):
            if not same(_rows(whole, order), outputs(call(take(inputs, order)))):
                return False, "the rows answer differently when the batch is reordered"
        # Each checked row next to other neighbours: the example's rows changed (numbers
        # scaled and shifted), else, when the model refuses those values, the example
        # reversed and twice over.
        for neighbours in _neighbours(inputs, frame):
            try:
                answers = [
                    _rows(outputs(call(_join([take(inputs, [i]), neighbours], frame))), [0])
                    for i in checked
                ]
            except Exception:
                continue  # values outside the model's domain: the next neighbours
            for i, answer in zip(checked, answers, strict=True):
                if not same(_rows(whole, [i]), answer):
                    return False, f"row {i}'s answer changes with the other rows in its batch"
            break
        else:
            return False, "the model fails when its rows get other neighbours"
    except Exception as exc:
        # A model that refuses another batch size (a fixed shape, a fixed row count) can't
        # take joined requests either.
        return False, f"the model fails on batches of another size ({type(exc).__name__})"
    return True, "each row answers the same alone, reordered and next to other rows"


def _rows(arrays: list[Any], index: list[int]) -> list[Any]:
    return [a[index] for a in arrays]


def _take_array(inputs: Any, index: list[int]) -> Any:
    return inputs[index]


def _take_frame(inputs: Any, index: list[int]) -> Any:
    return inputs.iloc[index].reset_index(drop=True)


def _join(parts: list[Any], frame: bool) -> Any:
    if frame:
        return sys.modules["pandas"].concat(parts, ignore_index=True)
    import numpy as np

    return np.concatenate(parts)


def _neighbours(inputs: Any, frame: bool) -> list[Any]:
    """Rows unlike the example's: floats scaled and shifted, reversed; then the example
    reversed and twice over (any dtype: the example's own values)."""
    import numpy as np

    if frame:
        changed = inputs.iloc[::-1].reset_index(drop=True).copy()
        for column in changed.columns:
            if changed[column].dtype.kind == "f":
                changed[column] = changed[column] * 3 + 1
        again = _join([inputs.iloc[::-1].reset_index(drop=True), inputs], True)
        return [changed, again]
    again = np.concatenate([inputs[::-1], inputs])
    if inputs.dtype.kind == "f":
        return [(inputs[::-1] * 3 + 1).astype(inputs.dtype), again]
    return [again]
