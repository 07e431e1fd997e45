"""Building any classifier by name, offline ImageNet weights, model bundles."""

from hierarchy.models.registry import available, build_architecture, create
from hierarchy.models.weights import (
    WeightsMismatchError,
    WeightsNotFoundError,
    WeightsSource,
    resolve_weights,
)

__all__ = [
    "WeightsMismatchError",
    "WeightsNotFoundError",
    "WeightsSource",
    "available",
    "build_architecture",
    "create",
    "resolve_weights",
]
