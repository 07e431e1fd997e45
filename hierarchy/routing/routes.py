"""The routes as pure numpy functions: how plane and expert probabilities become a tumour prediction.

Conventions: ``plane_proba`` is (n, len(planes)) with columns in ``planes`` order (the caller's
label set, always given: the Router's ``planes_``); ``expert_proba`` maps each plane to that expert's (n, k) tumour
probabilities for every image; every probability row sums to 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_ATOL = 1e-4


def _check_proba(proba: np.ndarray, name: str, columns: int | None = None) -> np.ndarray:
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_images, n_classes) array, got shape {proba.shape}")
    if columns is not None and proba.shape[1] != columns:
        raise ValueError(f"{name} has {proba.shape[1]} columns, expected {columns}")
    if not np.all(np.isfinite(proba)) or np.any(proba < -_ATOL):
        raise ValueError(f"{name} holds negative or non-finite probabilities")
    if not np.allclose(proba.sum(axis=1), 1.0, atol=_ATOL):
        raise ValueError(f"the rows of {name} do not sum to 1")
    return proba


def _stack_experts(expert_proba: Mapping[str, np.ndarray], planes: Sequence[str], n: int) -> np.ndarray:
    """(n_planes, n, k) array of the experts' probabilities in ``planes`` order."""
    missing = [p for p in planes if p not in expert_proba]
    if missing:
        raise ValueError(f"no expert probabilities for planes {missing}")
    stacked = [_check_proba(expert_proba[p], f"expert_proba[{p!r}]") for p in planes]
    shapes = {s.shape for s in stacked}
    if len(shapes) != 1 or stacked[0].shape[0] != n:
        raise ValueError(f"expert probability arrays must all be ({n}, k); got shapes {sorted(shapes)}")
    return np.stack(stacked)


def hard_route(plane_proba: np.ndarray, expert_proba: Mapping[str, np.ndarray], *,
               planes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Send each image to the expert of its most probable plane.

    Returns the (n, k) tumour probabilities and the (n,) array of planes whose expert decided.
    """
    plane_proba = _check_proba(plane_proba, "plane_proba", len(planes))
    experts = _stack_experts(expert_proba, planes, len(plane_proba))
    chosen = plane_proba.argmax(axis=1)
    proba = experts[chosen, np.arange(len(chosen))]
    return proba, np.asarray(planes, dtype=object)[chosen]


def soft_route(plane_proba: np.ndarray, expert_proba: Mapping[str, np.ndarray], *,
               planes: Sequence[str]) -> np.ndarray:
    """Mixture of experts weighted by the plane posterior: P(t|x) = sum_p P(p|x) P(t|x,p)."""
    plane_proba = _check_proba(plane_proba, "plane_proba", len(planes))
    experts = _stack_experts(expert_proba, planes, len(plane_proba))
    return np.einsum("np,pnk->nk", plane_proba, experts)


def ensemble_route(flat_proba: np.ndarray, soft_proba: np.ndarray, weight: float) -> np.ndarray:
    """Convex blend ``weight * flat + (1 - weight) * soft``; ``weight`` is the flat model's share."""
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"ensemble weight must lie in [0, 1], got {weight}")
    flat_proba = _check_proba(flat_proba, "flat_proba")
    soft_proba = _check_proba(soft_proba, "soft_proba", flat_proba.shape[1])
    if flat_proba.shape != soft_proba.shape:
        raise ValueError(f"flat_proba {flat_proba.shape} and soft_proba {soft_proba.shape} differ in shape")
    return weight * flat_proba + (1.0 - weight) * soft_proba


def oracle_route(true_planes: Sequence[str], expert_proba: Mapping[str, np.ndarray], *,
                 planes: Sequence[str]) -> np.ndarray:
    """Each image decided by the expert of its true plane: the upper bound of plane routing."""
    true_planes = list(true_planes)
    lookup = {p: i for i, p in enumerate(planes)}
    unknown = sorted({str(p) for p in true_planes if p not in lookup})
    if unknown:
        raise ValueError(f"the oracle route needs a known plane for every image; got {unknown}")
    experts = _stack_experts(expert_proba, planes, len(true_planes))
    index = np.array([lookup[p] for p in true_planes], dtype=int)
    return experts[index, np.arange(len(index))]


def header_route(header_planes: Sequence[str | None], plane_proba: np.ndarray,
                 expert_proba: Mapping[str, np.ndarray], *,
                 planes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each image decided by the expert of its plane from the DICOM/NIfTI geometry where it has one among
    ``planes`` (None or an oblique slice: the most probable plane, as the hierarchical route).

    Returns the (n, k) tumour probabilities and the (n,) planes whose expert decided.
    """
    plane_proba = _check_proba(plane_proba, "plane_proba", len(planes))
    experts = _stack_experts(expert_proba, planes, len(plane_proba))
    header_planes = list(header_planes)
    if len(header_planes) != len(plane_proba):
        raise ValueError(f"{len(header_planes)} header planes for {len(plane_proba)} images")
    lookup = {p: i for i, p in enumerate(planes)}
    chosen = np.array([lookup.get(h, -1) if isinstance(h, str) else -1 for h in header_planes], dtype=int)
    chosen = np.where(chosen < 0, plane_proba.argmax(axis=1), chosen)
    return experts[chosen, np.arange(len(chosen))], np.asarray(planes, dtype=object)[chosen]


def choose_ensemble_weight(y_val: Sequence[int], flat_proba_val: np.ndarray, soft_proba_val: np.ndarray,
                           grid: Sequence[float] = tuple(np.linspace(0.0, 1.0, 21))) -> float:
    """The flat model's weight in ``grid`` that maximises the validation mean log-likelihood.

    Log-likelihood rather than accuracy because it is smooth in the weight and rewards calibrated
    blends; ties go to the smallest weight (the hierarchical side) so the choice is deterministic.
    """
    y_val = np.asarray(y_val, dtype=int)
    flat_proba_val = _check_proba(flat_proba_val, "flat_proba_val")
    soft_proba_val = _check_proba(soft_proba_val, "soft_proba_val", flat_proba_val.shape[1])
    if not len(y_val) or len(y_val) != len(flat_proba_val) or len(y_val) != len(soft_proba_val):
        raise ValueError(f"need equally many (>0) labels and probability rows; got {len(y_val)}, "
                         f"{len(flat_proba_val)} and {len(soft_proba_val)}")
    if y_val.min() < 0 or y_val.max() >= flat_proba_val.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {flat_proba_val.shape[1]})")
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or not len(grid) or grid.min() < 0.0 or grid.max() > 1.0:
        raise ValueError("grid must be a non-empty 1-D sequence of weights in [0, 1]")
    rows = np.arange(len(y_val))
    scores = [np.mean(np.log(np.clip(ensemble_route(flat_proba_val, soft_proba_val, w)[rows, y_val],
                                     1e-12, None))) for w in grid]
    return float(grid[int(np.argmax(scores))])


def apply_rejection(proba: np.ndarray, reject_below: float | None) -> np.ndarray:
    """Boolean mask of images referred to a human: top probability below ``reject_below``."""
    proba = _check_proba(proba, "proba")
    if reject_below is None:
        return np.zeros(len(proba), dtype=bool)
    if not 0.0 <= float(reject_below) <= 1.0:
        raise ValueError(f"reject_below must lie in [0, 1], got {reject_below}")
    return proba.max(axis=1) < float(reject_below)


@dataclass(frozen=True)
class RouteProbabilities:
    """What one pass over the images gives: each requested route's (n, k) probabilities, the parent-group
    probabilities (None when only the flat route was asked for), for the hard route the group whose
    expert decided each image, and each image's out-of-distribution score (None without a scorer)."""

    routes: dict[str, np.ndarray]
    plane: np.ndarray | None = None
    expert_used: np.ndarray | None = None
    ood_score: np.ndarray | None = None
    header_expert: np.ndarray | None = None


def combine_routes(routes: Sequence[str], *, planes: Sequence[str], plane_proba: np.ndarray | None = None,
                   expert_proba: Mapping[str, np.ndarray] | None = None, flat_proba: np.ndarray | None = None,
                   ensemble_weight: float | None = None, true_planes: Sequence[str] | None = None,
                   header_planes: Sequence[str | None] | None = None) -> RouteProbabilities:
    """Turn the components' probabilities into the requested routes (names as in ``hierarchy.predictions.ROUTES``,
    and ``header``).

    ``expert_proba`` needs only the routed rows of each expert for ``hierarchical`` alone; ``soft``,
    ``ensemble``, ``oracle`` and ``header`` need every expert on every image. ``true_planes`` is the oracle's
    input, ``header_planes`` (the header plane of each image where it has one, else None) the header route's.
    """
    out: dict[str, np.ndarray] = {}
    hard = expert_used = header_expert = None
    if plane_proba is not None and expert_proba is not None:
        hard, expert_used = hard_route(plane_proba, expert_proba, planes=planes)
    for route in routes:
        if route == "flat":
            out[route] = flat_proba
        elif route == "hierarchical":
            out[route] = hard
        elif route == "soft":
            out[route] = soft_route(plane_proba, expert_proba, planes=planes)
        elif route == "ensemble":
            out[route] = ensemble_route(flat_proba, soft_route(plane_proba, expert_proba, planes=planes),
                                        ensemble_weight)
        elif route == "oracle":
            out[route] = oracle_route(true_planes, expert_proba, planes=planes)
        elif route == "header":
            out[route], header_expert = header_route(header_planes, plane_proba, expert_proba, planes=planes)
        else:
            raise ValueError(f"unknown route {route!r}")
    return RouteProbabilities(out, plane_proba, expert_used, header_expert=header_expert)
