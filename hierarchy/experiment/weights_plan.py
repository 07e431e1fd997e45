"""Which weights each model of the experiment starts from, decided (and reported) before training."""

from __future__ import annotations

import logging
from typing import Any

from hierarchy.experiment.profiles import ExperimentConfig
from hierarchy.models import WeightsNotFoundError, resolve_weights

logger = logging.getLogger(__name__)


def describe_weights(backbone: str, weights: str | None) -> str:
    """What a report prints about a backbone's starting weights (raises when they cannot be found)."""
    return resolve_weights(backbone, weights).description


def plan_weights(config: ExperimentConfig) -> dict[str, Any]:
    """The flat backbone actually trained, and the starting weights of every model.

    When ImageNet weights of ``config.router.flat`` cannot be found offline the plan says so, and
    the flat baseline becomes ``config.flat_fallback_backbone`` (offline-pretrained). Nothing falls
    back silently: the notes end up in the log, ``report.md`` and ``summary.json``.
    """
    notes: list[str] = []
    router = config.router
    flat = router.flat
    if router.weights is not None and flat != config.flat_fallback_backbone:
        try:
            resolve_weights(flat, router.weights)
        except WeightsNotFoundError as err:
            logger.warning("%s", err)
            notes.append(f"ImageNet weights for the intended flat baseline {flat} were not found offline "
                         "(see README, 'Pretrained weights without internet'). "
                         f"The flat baseline is {config.flat_fallback_backbone} with offline ImageNet weights "
                         f"instead" + (f"; {flat} is also trained from random initialisation and reported "
                                       f"as such" if config.flat_random_init_too else "") + ".")
            flat = config.flat_fallback_backbone
    if router.mode in ("shared", "joint"):
        trunk = f"the trunk of the fine-tuned flat model ({flat}); linear heads fitted on its frozen features"
        joint = router.mode == "joint"
        sources = {"flat": describe_weights(flat, router.weights) + ", fine-tuned end to end"
                   + (" on the tumour label and the plane at once" if joint else ""),
                   "plane": f"the plane head trained jointly with the flat model ({flat})" if joint else trunk,
                   "experts": trunk}
    else:
        sources = {
            "flat": describe_weights(flat, router.weights),
            "plane": describe_weights(router.plane, router.weights),
            "experts": (f"the trained flat model ({flat}), then fine-tuned per plane"
                        if router.expert_init == "flat" else
                        describe_weights(router.experts, None if router.expert_init == "scratch" else router.weights)),
        }
    plan = {
        "flat_backbone": flat,
        "intended_flat_backbone": router.flat,
        "random_init_flat_backbone": (router.flat if flat != router.flat
                                      and config.flat_random_init_too else None),
        "sources": sources,
        "notes": notes,
    }
    for note in notes:
        logger.warning(note)
    return plan
