"""Multiple-comparison adjustment over a declared family of tests: Holm and Benjamini-Hochberg.

Holm (1979) controls the family-wise error rate (the chance of any false positive in the family) under
any dependence between the tests; Benjamini-Hochberg (1995) controls the false discovery rate, computed by
``scipy.stats.false_discovery_control``. Adjusted p-values are compared with the same level as raw ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import false_discovery_control

METHODS = {"holm": "Holm step-down (family-wise error rate)",
           "bh": "Benjamini-Hochberg step-up (false discovery rate)"}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values: ``max_{j <= i} min(1, (m - j + 1) p_(j))`` in sorted order, returned in input order."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def adjust_p_values(p_values: Sequence[float], method: str = "holm") -> np.ndarray:
    """Adjusted p-values of one family, in input order; ``method`` is ``"holm"`` or ``"bh"``.

    Raises
    ------
    ValueError
        Unknown method, or a p-value outside [0, 1] or missing (a family is adjusted whole or not at all).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    if not len(p):
        return p
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"p-values must lie in [0, 1] (none missing), got {p.tolist()}")
    return holm(p) if method == "holm" else false_discovery_control(p, method="bh")


def adjust_family(p_values: Mapping[str, float | None], *, method: str = "holm",
                  level: float = 0.05) -> list[dict]:
    """One row per named test of a declared family: raw and adjusted p-value side by side.

    Tests whose p-value is None (not run, e.g. a route missing) are listed with None and do not count in
    the family size ``m``, which each row states.

    Returns
    -------
    list of dict
        ``{"name", "p_raw", "p_adjusted", "significant" (adjusted < level), "method", "m"}`` in input order.
    """
    names = list(p_values)
    present = [n for n in names if p_values[n] is not None]
    adjusted = dict(zip(present, adjust_p_values([p_values[n] for n in present], method), strict=True))
    return [{"name": name, "p_raw": p_values[name],
             "p_adjusted": None if name not in adjusted else float(adjusted[name]),
             "significant": None if name not in adjusted else bool(adjusted[name] < level),
             "method": method, "m": len(present)} for name in names]
