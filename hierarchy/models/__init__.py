"""Building any classifier by name, offline ImageNet weights, model bundles."""

from hierarchy.models.bundle import BundleError, load_bundle, read_bundle_config, save_bundle
from hierarchy.models.registry import available, build_architecture, create
from hierarchy.models.weights import (
    WeightsMismatchError,
    WeightsNotFoundError,
    WeightsSource,
    resolve_weights,
)

__all__ = [
    "BundleError",
    "WeightsMismatchError",
    "WeightsNotFoundError",
    "WeightsSource",
    "available",
    "build_architecture",
    "create",
    "load_bundle",
    "read_bundle_config",
    "resolve_weights",
    "save_bundle",
]
