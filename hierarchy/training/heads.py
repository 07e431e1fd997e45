"""Linear (multinomial logistic-regression) heads fitted on cached features, and their attachment to a model."""

from __future__ import annotations

import logging

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn
from torch.nn import functional as F

from hierarchy.training.losses import class_balanced_weights, neutrality

logger = logging.getLogger(__name__)

# Multiples of the given weight decay tried when validation features are passed.
WEIGHT_DECAY_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def _tensors(features: np.ndarray, targets: np.ndarray, num_classes: int,
             what: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{what}: expected features (n, d) and targets (n,) with n > 0, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: features contain NaN or infinite values")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{what}: targets range over [{y.min()}, {y.max()}], outside [0, {num_classes})")
    return x, y


def _fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float,
         class_weights: torch.Tensor | None, start: tuple[torch.Tensor, torch.Tensor],
         neutral: tuple[torch.Tensor, float] | None = None,
         centre: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean cross-entropy + weight_decay / 2 * ||W - centre||^2 (centre: zero unless given)
    (+ weight * :func:`neutrality` of the ``neutral`` rows) by full-batch L-BFGS."""
    centre = torch.zeros_like(start[0]) if centre is None else centre
    weight, bias = (start[0].clone().requires_grad_(), start[1].clone().requires_grad_())
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=200, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (F.cross_entropy(x @ weight.T + bias, y, weight=class_weights)
                + 0.5 * weight_decay * (weight - centre).square().sum())
        if neutral is not None:
            loss = loss + neutral[1] * neutrality(neutral[0] @ weight.T + bias).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def fit_linear_head(features: np.ndarray, targets: np.ndarray, num_classes: int, *,
                    class_balanced: bool = False, weight_decay: float = 1e-4, seed: int = 0,
                    val: tuple[np.ndarray, np.ndarray] | None = None, neutral: np.ndarray | None = None,
                    neutral_weight: float = 0.0, prior: nn.Linear | None = None,
                    prior_weight: float = 0.0) -> nn.Linear:
    """A multinomial logistic-regression head ``nn.Linear(d, num_classes)`` trained on ``features``.

    Features are standardised for the fit (the scaling is folded back into the returned layer, which takes
    raw features). ``weight_decay`` is the L2 penalty on the standardised weights; with ``val`` the penalty
    is chosen from ``weight_decay * WEIGHT_DECAY_GRID`` by validation balanced accuracy (ties: lower
    validation loss). ``class_balanced`` weights the loss by inverse class frequency. ``neutral`` (m, d) rows,
    e.g. a tumour image's features pooled outside its mask, add ``neutral_weight`` times :func:`neutrality` of
    their logits: the head must favour no class on them.

    ``prior`` (a head on the same raw features and classes, e.g. the flat model's) with ``prior_weight`` > 0
    replaces the decay towards zero: the fit starts at the prior and pays ``prior_weight / 2`` times the squared
    distance of its standardised weights from the prior's, so it departs from the prior only where the
    training rows pay for it (recursive regularisation, Gopal & Yang, KDD 2013). The weight is fixed: a
    validation grid would undo it, since the pull trades validation accuracy for the prior's reading of the
    features; ``val`` is then only logged.
    """
    x, y = _tensors(features, targets, num_classes, "training features")
    mean, std = x.mean(0), x.std(0, correction=0).clamp_min(1e-6)
    x = (x - mean) / std
    class_weights = class_balanced_weights(y, num_classes) if class_balanced else None
    if neutral_weight < 0:
        raise ValueError(f"neutral_weight must be >= 0, got {neutral_weight}")
    neutral_rows = None
    if neutral is not None and neutral_weight > 0 and len(neutral):
        rows = torch.as_tensor(np.asarray(neutral), dtype=torch.float32)
        if rows.ndim != 2 or rows.shape[1] != x.shape[1] or not torch.isfinite(rows).all():
            raise ValueError(f"neutral rows must be finite (m, {x.shape[1]}) features, got {tuple(rows.shape)}")
        neutral_rows = ((rows - mean) / std, float(neutral_weight))
    if prior_weight < 0:
        raise ValueError(f"prior_weight must be >= 0, got {prior_weight}")
    if prior is not None and prior_weight > 0:
        weight, bias = _fit_towards(prior, x, y, num_classes, mean, std, prior_weight, class_weights, neutral_rows)
        if val is not None:
            xv, yv = _tensors(val[0], val[1], num_classes, "validation features")
            logits = ((xv - mean) / std) @ weight.T + bias
            logger.info("linear head pulled towards its prior (weight %g): val balanced accuracy %.4f", prior_weight,
                        balanced_accuracy_score(yv.numpy(), logits.argmax(1).numpy()))
        return _raw_head(weight, bias, mean, std)
    generator = torch.Generator().manual_seed(seed)
    fit = (torch.randn(num_classes, x.shape[1], generator=generator) * 0.01, torch.zeros(num_classes))
    if val is None:
        weight, bias = _fit(x, y, num_classes, weight_decay, class_weights, fit, neutral_rows)
    else:
        xv, yv = _tensors(val[0], val[1], num_classes, "validation features")
        xv = (xv - mean) / std
        best = None
        # Strongest penalty first, each fit warm-started from the previous one.
        for decay in sorted((weight_decay * f for f in WEIGHT_DECAY_GRID), reverse=True):
            fit = _fit(x, y, num_classes, decay, class_weights, fit, neutral_rows)
            logits = xv @ fit[0].T + fit[1]
            score = (balanced_accuracy_score(yv.numpy(), logits.argmax(1).numpy()),
                     -F.cross_entropy(logits, yv).item())
            if best is None or score > best[0]:
                best = (score, decay, fit)
        (score, chosen, (weight, bias)) = best
        logger.info("linear head: weight_decay=%g chosen (val balanced accuracy %.4f)", chosen, score[0])
    return _raw_head(weight, bias, mean, std)


def _fit_towards(prior: nn.Linear, x: torch.Tensor, y: torch.Tensor, num_classes: int, mean: torch.Tensor,
                 std: torch.Tensor, prior_weight: float, class_weights: torch.Tensor | None,
                 neutral: tuple[torch.Tensor, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_fit` on standardised features, started at and pulled towards ``prior`` (a head on raw features)."""
    if not isinstance(prior, nn.Linear) or prior.bias is None or tuple(prior.weight.shape) != (num_classes, x.shape[1]):
        raise ValueError(f"prior must be an nn.Linear({x.shape[1]}, {num_classes}) with bias, got {prior!r}")
    with torch.no_grad():
        # the prior acting on standardised features: W x = (W * std) (x - mean) / std + W mean
        centre = prior.weight.detach().float() * std
        start = (centre, prior.bias.detach().float() + prior.weight.detach().float() @ mean)
    return _fit(x, y, num_classes, prior_weight, class_weights, start, neutral, centre=centre)


def _raw_head(weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> nn.Linear:
    """The ``nn.Linear`` on raw features equal to (``weight``, ``bias``) on features standardised by ``mean``, ``std``."""
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight / std)
        head.bias.copy_(bias - (weight / std) @ mean)
    return head


def attach_head(model: nn.Module, linear: nn.Linear) -> nn.Module:
    """Make ``linear`` the model's classifier (``reset_classifier`` then copy), so images go straight to logits."""
    if not isinstance(linear, nn.Linear) or linear.bias is None:
        raise TypeError(f"expected an nn.Linear with bias, got {linear!r}")
    model.reset_classifier(linear.out_features)
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Linear) or classifier.in_features != linear.in_features:
        raise ValueError(f"{type(model).__name__}'s classifier {classifier!r} cannot take a head with "
                         f"{linear.in_features} inputs")
    with torch.no_grad():
        classifier.weight.copy_(linear.weight)
        classifier.bias.copy_(linear.bias)
    return model
