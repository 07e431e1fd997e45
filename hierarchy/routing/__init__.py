"""``Router`` (parent-group classifier, per-group experts, flat baseline), its configuration, components and routes."""

from hierarchy.routing.adapters import ModuleClassifier, SklearnClassifier
from hierarchy.routing.components import (
    Component,
    ImageClassifier,
    Task,
    UntrustedCodeError,
    load_component,
)
from hierarchy.routing.config import RouterConfig
from hierarchy.routing.estimator import Router
from hierarchy.routing.persistence import RouterError
from hierarchy.routing.routes import (
    RouteProbabilities,
    apply_rejection,
    choose_ensemble_weight,
    combine_routes,
    ensemble_route,
    hard_route,
    oracle_route,
    soft_route,
)
from hierarchy.routing.throughput import route_throughput

__all__ = [
    "Component",
    "ImageClassifier",
    "ModuleClassifier",
    "RouteProbabilities",
    "Router",
    "RouterConfig",
    "RouterError",
    "SklearnClassifier",
    "Task",
    "UntrustedCodeError",
    "apply_rejection",
    "choose_ensemble_weight",
    "combine_routes",
    "ensemble_route",
    "hard_route",
    "load_component",
    "oracle_route",
    "route_throughput",
    "soft_route",
]
