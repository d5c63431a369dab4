"""The figures a script reports (metrics, losses, scaling factors): none is printed, written or released as NaN or
infinite while the script ends as if it had worked. Imports nothing of the package, so that the training tool, the
evaluation and the scripts share it."""

from __future__ import annotations

import math


def non_finite_figures(figures, name: str = "") -> list[str]:
    """`"name=value"` for every NaN or infinite number in `figures` (a number, or dicts and lists of them, nested;
    entries named by their keys joined with '/'); other values are ignored."""
    if isinstance(figures, (list, tuple)):
        figures = dict(enumerate(figures))
    if isinstance(figures, dict):
        return [found for key, value in figures.items() for found in non_finite_figures(value, _join(name, key))]
    if isinstance(figures, (int, float)) and not isinstance(figures, bool) and not math.isfinite(figures):
        return [f"{name or 'value'}={figures}"]
    if hasattr(figures, "item") and getattr(figures, "ndim", None) == 0:  # a 0-d tensor or NumPy number
        return non_finite_figures(figures.item(), name)
    return []


def _join(name: str, key) -> str:
    return f"{name}/{key}" if name else str(key)


def check_finite_figures(figures, what: str, fix: str) -> None:
    """Raise a `ValueError` naming every NaN or infinite entry of `figures` (`what` they are, e.g. "The
    reconstruction figures of my-pdae") and `fix`, what to check or do."""
    bad = non_finite_figures(figures)
    if bad:
        shown = ", ".join(bad[:8]) + (f", ... ({len(bad)} in all)" if len(bad) > 8 else "")
        raise ValueError(f"{what} are not all finite ({shown}). {fix}")
