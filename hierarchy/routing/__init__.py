"""The plane classifier, the per-plane tumour experts, the flat model, the routes, and ``Router``."""

from hierarchy.routing.components import (
    FlatClassifier,
    ImageClassifier,
    PlaneClassifier,
    TumorExpert,
)
from hierarchy.routing.router import Router
from hierarchy.routing.routes import (
    apply_rejection,
    choose_ensemble_weight,
    ensemble_route,
    hard_route,
    oracle_route,
    soft_route,
)
from hierarchy.routing.throughput import route_throughput

__all__ = [
    "FlatClassifier",
    "ImageClassifier",
    "PlaneClassifier",
    "Router",
    "TumorExpert",
    "apply_rejection",
    "choose_ensemble_weight",
    "ensemble_route",
    "hard_route",
    "oracle_route",
    "route_throughput",
    "soft_route",
]
