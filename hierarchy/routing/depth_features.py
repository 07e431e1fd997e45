"""Recording a network's features at several depths while a Router predicts, for multi-depth OOD scores.

:func:`record_depths` hooks the stages of the network whose trunk the Router's OOD score reads (timm's
``blocks``, or ``features`` for ``simple_cnn``) and its classifier (whose input is the pooled pre-logit
feature), so that one ``Router.predict_routes`` pass gives the prediction table and, per image, the channel
means and standard deviations of every stage. The flat model's classifier is hooked too, for its logits
(energy scores). :func:`depth_inputs` turns a record into the per-depth features a
:class:`hierarchy.routing.ood.MultiDepthOODScorer` of one of :data:`DEPTH_KINDS` reads, and
:func:`predict_depth_inputs` runs a Router over images to get them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from hierarchy.routing.fitting import ood_component
from hierarchy.routing.ood import DEPTH_KINDS


def _stages(model: nn.Module) -> list[nn.Module]:
    for name in ("blocks", "features"):
        stages = getattr(model, name, None)
        if isinstance(stages, nn.Sequential):
            return list(stages)
    raise TypeError(f"{type(model).__name__} has no 'blocks' or 'features' stages to record")


@dataclass
class DepthRecord:
    """What :func:`record_depths` collected: per stage a list of (batch, 2C) [mean | std] arrays, the pooled
    pre-logit features and the flat model's logits, one entry per batch."""

    stages: list[list[np.ndarray]] = field(default_factory=list)
    final: list[np.ndarray] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)

    def stage_statistics(self) -> list[np.ndarray]:
        """Per stage, the (n, 2C) channel means and standard deviations of every image."""
        return [np.concatenate(batches) for batches in self.stages]

    def stage_means(self) -> list[np.ndarray]:
        """Per stage, the (n, C) channel means of every image."""
        return [s[:, : s.shape[1] // 2] for s in self.stage_statistics()]

    def pooled(self) -> np.ndarray:
        """(n, d) pooled pre-logit features."""
        return np.concatenate(self.final)

    def flat_logits(self) -> np.ndarray | None:
        """(n, k) logits of the flat model, or None when it did not run."""
        return np.concatenate(self.logits) if self.logits else None


@contextmanager
def record_depths(router) -> Iterator[DepthRecord]:
    """Record stage statistics, pooled features and flat logits during ``router.predict_routes`` calls.

    The OOD trunk must be shared by every component (as in ``mode="joint"``), so each batch runs it once; a
    pass that ran it more or less often than its classifier raises ``RuntimeError``.
    """
    if router.ood_trunk_ != "shared":
        raise ValueError(f"recording depths needs one trunk shared by every component; this Router's OOD score "
                         f"reads the {router.ood_trunk_!r} trunk")
    model = router.components_[ood_component(router.ood_trunk_)].model_
    stages = _stages(model)
    record = DepthRecord(stages=[[] for _ in stages])

    def stage_hook(index: int):
        def hook(_module, _inputs, output: torch.Tensor) -> None:
            out = output.float()
            record.stages[index].append(torch.cat([out.mean(dim=(2, 3)), out.std(dim=(2, 3))], dim=1)
                                        .cpu().numpy())
        return hook

    def final_hook(_module, inputs, _output) -> None:
        record.final.append(inputs[0].float().cpu().numpy())

    def logits_hook(_module, _inputs, output) -> None:
        record.logits.append(output.float().cpu().numpy())

    handles = [stage.register_forward_hook(stage_hook(i)) for i, stage in enumerate(stages)]
    handles.append(model.get_classifier().register_forward_hook(final_hook))
    if router.flat_model_ is not None:
        handles.append(router.flat_model_.model_.get_classifier().register_forward_hook(logits_hook))
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()
    counts = {len(s) for s in record.stages} | {len(record.final)}
    if len(counts) != 1:
        raise RuntimeError(f"the trunk ran a different number of times than its classifier ({sorted(counts)}); "
                           "recorded depths would not line up with the images")


def depth_inputs(kind: str, stages: Sequence[np.ndarray], pooled: np.ndarray) -> list[np.ndarray]:
    """The per-depth features a multi-depth scorer of ``kind`` reads, from the (n, 2C) [mean | std] statistics
    of every stage and the (n, d) pooled features: ``depth_means`` (channel means of every stage, then the pooled
    features) or ``depth_stats`` (means and standard deviations of every stage, then the pooled features)."""
    if kind == "depth_means":
        return [s[:, : s.shape[1] // 2] for s in stages] + [pooled]
    if kind == "depth_stats":
        return [*stages, pooled]
    raise ValueError(f"unknown multi-depth kind {kind!r}; choose from {DEPTH_KINDS}")


def predict_depth_inputs(router, inputs, kind: str, *, batch_size: int = 32) -> list[np.ndarray]:
    """``depth_inputs(kind, ...)`` of ``inputs`` (anything ``Router.predict_routes`` takes), from one pass of the
    hierarchical route with :func:`record_depths` attached (no test-time views)."""
    if kind not in DEPTH_KINDS:
        raise ValueError(f"unknown multi-depth kind {kind!r}; choose from {DEPTH_KINDS}")
    with record_depths(router) as record:
        router.predict_routes(inputs, ("hierarchical",), batch_size=batch_size, progress=False, tta=False)
    return depth_inputs(kind, record.stage_statistics(), record.pooled())
