"""Test-time augmentation: named, deterministic views of a preprocessed batch.

A view maps a normalised (N, C, S, S) batch, as ``eval_transform`` makes it, to another batch of the
same shape; a model's probabilities averaged over views are its TTA prediction. Views that move
pixels fill uncovered area with each image's minimum (the background of a padded, normalised input).

Label-preserving for every plane: ``identity``, ``hflip`` (a mirrored axial or coronal slice is still
one; a mirrored sagittal slice faces the other way, a view the light augmentation does not train
on), ``zoom_in``/``zoom_out`` (10 %) and ``rotate_5``/``rotate_-5`` (degrees). ``vflip``, ``rot90``,
``rot180`` and ``rot270`` keep the tumour class and the plane but show orientations a model sees only
when trained with ``AugmentConfig.dihedral_p`` > 0 (the ``robust`` preset); use them only then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

DEFAULT_TTA: tuple[str, ...] = ("identity", "hflip")


def _around_background(transform: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``transform`` applied with each image's minimum as the fill value of uncovered pixels."""
    def view(x: torch.Tensor) -> torch.Tensor:
        background = x.amin(dim=(-3, -2, -1), keepdim=True)
        return transform(x - background) + background
    return view


def _affine(angle: float = 0.0, scale: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    return _around_background(lambda x: v2.functional.affine(
        x, angle=angle, translate=[0, 0], scale=scale, shear=[0.0, 0.0],
        interpolation=v2.InterpolationMode.BILINEAR, fill=0.0))


TTA_VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "hflip": lambda x: x.flip(-1),
    "zoom_in": _affine(scale=1.1),
    "zoom_out": _affine(scale=0.9),
    "rotate_5": _affine(angle=5.0),
    "rotate_-5": _affine(angle=-5.0),
    "vflip": lambda x: x.flip(-2),
    "rot90": lambda x: torch.rot90(x, 1, dims=(-2, -1)),
    "rot180": lambda x: torch.rot90(x, 2, dims=(-2, -1)),
    "rot270": lambda x: torch.rot90(x, 3, dims=(-2, -1)),
}


def tta_views(x: torch.Tensor, names: Sequence[str] = DEFAULT_TTA) -> list[torch.Tensor]:
    """The views ``names`` (keys of ``TTA_VIEWS``) of a (N, C, S, S) or (C, S, S) batch, in order.

    Raises
    ------
    ValueError
        When a name is unknown or ``names`` is empty; the message lists the known views.
    """
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in TTA_VIEWS]
    if unknown or not names:
        raise ValueError(f"unknown or no TTA views {unknown or names}; expected names from {list(TTA_VIEWS)}")
    if x.dim() not in (3, 4):
        raise ValueError(f"expected a (N, C, S, S) or (C, S, S) tensor, got shape {tuple(x.shape)}")
    return [TTA_VIEWS[n](x) for n in names]
