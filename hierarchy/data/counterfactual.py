"""Counterfactual images from radiologist tumour masks: a tumour pasted into a normal brain, a tumour removed,
the background around a tumour swapped, an image restyled like a file of another class.

The same operations build the shortcut tests (:mod:`hierarchy.experiment.shortcut_tests`: does the model's
answer follow the tumour, not the image's source?) and the counterfactual training augmentation
(:mod:`hierarchy.data.counterfactual_augment`). They act on 8-bit greyscale arrays and boolean masks.
Two images are put in correspondence through their head crops (:func:`hierarchy.data.preprocess.foreground_box`):
a tumour at 30% of the donor head's width lands at 30% of the recipient head's width, which is the
plane-matched position when both slices are of the same plane.

Methods, as the report states them:

- *paste-in* (:func:`paste_tumour`): the donor's masked region, its intensities mapped onto the recipient
  head's by quantile matching, blended with a feathered (Gaussian) edge;
- *removal* (:func:`remove_tumour`): the mask dilated by ``margin`` (rim and oedema) and filled by
  biharmonic inpainting (scikit-image), by the mirrored contralateral hemisphere, or by normalised-convolution
  diffusion with matched noise (``diffusion``) or without it, its scales blended (``smooth``: no texture);
  mass effect (shifted midline, compressed ventricles) stays, so "called no tumour after removal" is a lower
  bound on what the model would do for a truly normal brain;
- *background swap* (:func:`swap_background`): the tumour and a wide margin of its own surroundings kept with
  their original intensities, everything else taken from a normal slice of the same plane;
- *style swap* (:func:`restyle_like`): the whole image's intensity histogram matched to a reference image,
  resized to the reference's pixel size and re-encoded with the reference file's colour mode and JPEG
  quantisation tables, so that every global property of the file is the reference's.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.restoration import inpaint_biharmonic

from hierarchy.data.masks import resize_bool
from hierarchy.data.preprocess import foreground_box, foreground_mask

REMOVAL_METHODS = ("biharmonic", "contralateral", "diffusion", "smooth")
_QUANTILES = np.linspace(0.0, 1.0, 101)


def _resize(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``array`` (uint8 or bool) resized to ``shape`` (H, W)."""
    if array.shape == shape:
        return array
    if array.dtype == bool:
        return resize_bool(array, shape[::-1])
    return np.asarray(Image.fromarray(array).resize(shape[::-1], Image.Resampling.BILINEAR))


def head_of(image: np.ndarray) -> np.ndarray:
    """Boolean head mask of an 8-bit image (:func:`~hierarchy.data.preprocess.foreground_mask`; all True
    when the image is flat)."""
    mask = foreground_mask(Image.fromarray(image))
    return np.ones(image.shape, dtype=bool) if mask is None or not mask.any() else mask


def match_intensity(source: np.ndarray, reference: np.ndarray, source_mask: np.ndarray | None = None,
                    reference_mask: np.ndarray | None = None) -> np.ndarray:
    """``source`` with its intensities mapped so that the quantiles of its ``source_mask`` pixels equal those
    of ``reference``'s ``reference_mask`` pixels (histogram matching; float array in [0, 255])."""
    src = source[source_mask] if source_mask is not None and source_mask.any() else source.ravel()
    ref = reference[reference_mask] if reference_mask is not None and reference_mask.any() else reference.ravel()
    src_q = np.quantile(src.astype(np.float64), _QUANTILES)
    ref_q = np.quantile(ref.astype(np.float64), _QUANTILES)
    src_q = np.maximum.accumulate(src_q + np.arange(len(src_q)) * 1e-6)  # strictly increasing for interp
    return np.interp(source.astype(np.float64), src_q, ref_q)


def feathered(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A float alpha map: 1 inside ``mask``, falling smoothly to 0 over about ``2 * sigma`` pixels outside."""
    if sigma <= 0:
        return mask.astype(np.float64)
    grown = ndimage.binary_dilation(mask, iterations=max(1, round(sigma)))
    return np.maximum(mask, ndimage.gaussian_filter(grown.astype(np.float64), sigma)).clip(0.0, 1.0)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _side(shape: tuple[int, ...]) -> float:
    return float(max(shape[:2]))


def paste_tumour(recipient: np.ndarray, donor: np.ndarray, donor_mask: np.ndarray, *,
                 feather: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """The donor's tumour pasted into ``recipient``; both images are head crops (or any two images in
    corresponding coordinates). Returns the composite (uint8, ``recipient``'s shape) and the pasted mask.

    The donor and its mask are resized to the recipient's shape, the donor's intensities are matched to the
    recipient's head, and the masked region is blended with a Gaussian edge of ``feather`` times the longer side.
    """
    shape = recipient.shape
    donor, donor_mask = _resize(donor, shape), _resize(donor_mask.astype(bool), shape)
    matched = match_intensity(donor, recipient, head_of(donor), head_of(recipient))
    alpha = feathered(donor_mask, feather * _side(shape))
    return _to_uint8(recipient * (1.0 - alpha) + matched * alpha), donor_mask


def _dilated(mask: np.ndarray, margin: float) -> np.ndarray:
    return ndimage.binary_dilation(mask, iterations=max(1, round(margin * _side(mask.shape))))


def _fill_biharmonic(image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return inpaint_biharmonic(image.astype(np.float64) / 255.0, region) * 255.0


def _normalised_convolution(image: np.ndarray, region: np.ndarray, *, soft: bool) -> np.ndarray:
    """``image`` with each pixel of ``region`` replaced by the Gaussian-weighted mean of the known pixels around
    it, at the smallest of growing scales (2, 4, 8, ... pixels) where the known pixels weigh enough. ``soft``
    hands each pixel from one scale to the next in proportion to that weight, so that no ring marks where a
    scale takes over; pixels that no scale reaches keep their value."""
    known = (~region).astype(np.float64)
    values = image.astype(np.float64) * known
    filled = np.zeros(image.shape)
    remaining = region.astype(np.float64)
    sigma = 2.0
    while remaining.any() and sigma < _side(image.shape):
        weight = ndimage.gaussian_filter(known, sigma)
        estimate = ndimage.gaussian_filter(values, sigma) / np.maximum(weight, 1e-9)
        share = remaining * (np.clip(weight / 0.05, 0.0, 1.0) if soft else weight > 0.05)
        filled += share * estimate
        remaining -= share
        sigma *= 2.0
    return np.where(region, filled + remaining * image, image.astype(np.float64))


def _fill_smooth(image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth fill without texture (:func:`_normalised_convolution`, scales blended)."""
    return _normalised_convolution(image, region, soft=True)


def _fill_diffusion(image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Normalised convolution plus noise with the standard deviation of the known ring around the region (the
    tissue's texture)."""
    filled = _normalised_convolution(image, region, soft=False)
    ring = _dilated(region, 0.02) & ~region
    texture = image[ring].astype(np.float64) - ndimage.gaussian_filter(image.astype(np.float64), 2.0)[ring]
    noise = ndimage.gaussian_filter(rng.standard_normal(image.shape), 0.7)
    noise *= (texture.std() if texture.size else 0.0) / max(noise.std(), 1e-9)
    filled[region] += noise[region]
    return filled


def _fill_contralateral(image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The left-right mirror of the head crop (the other hemisphere) where it is free of ``region``;
    the rest (midline tumours) by diffusion."""
    mirror, mirror_region = image[:, ::-1], region[:, ::-1]
    usable = region & ~mirror_region
    filled = image.astype(np.float64).copy()
    filled[usable] = mirror[usable]
    rest = region & ~usable
    if rest.any():
        filled = _fill_diffusion(_to_uint8(filled), rest, rng)
    return filled


_FILLS: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]] = {
    "biharmonic": _fill_biharmonic, "contralateral": _fill_contralateral, "diffusion": _fill_diffusion,
    "smooth": _fill_smooth}


def check_removal_fills(fills: tuple[str, ...] | list[str]) -> None:
    """Refuse ``removal_fills`` that name no fill of ``REMOVAL_METHODS``
    (or name one twice, which would weigh it double without saying so)."""
    unknown = sorted(set(fills) - set(REMOVAL_METHODS))
    if unknown or len(set(fills)) != len(fills):
        raise ValueError(f"removal_fills must name distinct fills of {REMOVAL_METHODS}, got {list(fills)}")


def remove_tumour(image: np.ndarray, mask: np.ndarray, *, method: str = "biharmonic", margin: float = 0.02,
                  seed: int = 0) -> np.ndarray:
    """``image`` with the tumour ``mask`` (dilated by ``margin`` of the longer side) filled by ``method``
    (one of ``REMOVAL_METHODS``; ``contralateral`` expects a head crop whose midline is vertical and central,
    as axial and coronal crops are). ``seed`` fixes the noise of the diffusion fill."""
    if method not in _FILLS:
        raise ValueError(f"unknown removal method {method!r}; expected one of {REMOVAL_METHODS}")
    mask = _resize(mask.astype(bool), image.shape)
    if not mask.any():
        return image.copy()
    region = _dilated(mask, margin)
    filled = _FILLS[method](image, region, np.random.default_rng(seed))
    alpha = feathered(region, 0.5 * margin * _side(image.shape))
    return _to_uint8(image * (1.0 - alpha) + filled * alpha)


def healthy_region(shape: np.ndarray, head: np.ndarray, avoid: np.ndarray, rng: np.random.Generator, *,
                   tries: int = 4, inside: float = 0.8) -> np.ndarray | None:
    """A region of ``shape``'s form (a boolean mask, resized to ``head``'s shape) moved to a random place where at
    least ``inside`` of it lies in ``head`` and none of it in ``avoid``; None when ``tries`` places all fail."""
    shape = _resize(shape.astype(bool), head.shape)
    ys, xs = np.nonzero(shape)
    if ys.size == 0:
        return None
    part = shape[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    height, width = part.shape
    free_y, free_x = head.shape[0] - height, head.shape[1] - width
    if free_y < 0 or free_x < 0:
        return None
    for _ in range(tries):
        top, left = int(rng.integers(free_y + 1)), int(rng.integers(free_x + 1))
        region = np.zeros(head.shape, dtype=bool)
        region[top:top + height, left:left + width] = part
        if (region & head).sum() >= inside * region.sum() and not (region & avoid).any():
            return region
    return None


def swap_background(tumour_image: np.ndarray, mask: np.ndarray, normal: np.ndarray, *,
                    margin: float = 0.08, feather: float = 0.01) -> np.ndarray:
    """The tumour and ``margin`` (of the longer side) of its surroundings, original intensities, on the
    background of ``normal`` (resized to ``tumour_image``'s shape; both head crops)."""
    shape = tumour_image.shape
    background = _resize(normal, shape)
    keep = _dilated(_resize(mask.astype(bool), shape), margin)
    alpha = feathered(keep, feather * _side(shape))
    return _to_uint8(background * (1.0 - alpha) + tumour_image * alpha)


@dataclass(frozen=True)
class FileStyle:
    """What a file's storage says about its source: pixel size (width, height), colour mode, JPEG tables."""

    size: tuple[int, int]
    mode: str
    qtables: tuple[tuple[int, ...], ...] | None

    @classmethod
    def of(cls, image: str | Path | Image.Image) -> FileStyle:
        """The style of an opened image or of a file (read from its header; no pixel data is decoded)."""
        if not isinstance(image, Image.Image):
            with Image.open(image) as opened:
                return cls.of(opened)
        tables = getattr(image, "quantization", None)
        return cls(image.size, image.mode, tuple(tuple(tables[k]) for k in sorted(tables)) if tables else None)

    def reencode(self, image: Image.Image) -> Image.Image:
        """``image`` (mode L) saved in this style's colour mode with its JPEG tables, decoded back to L
        (unchanged when the style is not a JPEG's)."""
        if self.qtables is None:
            return image
        buffer = io.BytesIO()
        image.convert("RGB" if self.mode not in ("L", "1", "P") else "L").save(
            buffer, "JPEG", qtables=[list(t) for t in self.qtables])
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert("L")


def restyle_like(image: np.ndarray, reference: np.ndarray, style: FileStyle, *,
                 size: tuple[int, int] | None = None) -> Image.Image:
    """``image`` (8-bit greyscale) stored like the reference file: intensities matched to ``reference``'s
    (the reference's pixels; heads only), resized to ``size`` (default: the reference file's, ``style.size``)
    and re-encoded in ``style``'s colour mode with its JPEG quantisation tables."""
    styled = _to_uint8(match_intensity(image, reference, head_of(image), head_of(reference)))
    resized = Image.fromarray(styled)
    target = style.size if size is None else size
    if resized.size != tuple(target):
        resized = resized.resize(tuple(target), Image.Resampling.BILINEAR)
    return style.reencode(resized)


def head_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """The head's bounding box (left, upper, right, lower) of an 8-bit image; the whole image when none."""
    box = foreground_box(Image.fromarray(image))
    return box if box is not None else (0, 0, image.shape[1], image.shape[0])


def crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``array`` cropped to ``box`` (left, upper, right, lower)."""
    left, upper, right, lower = box
    return array[upper:lower, left:right]


def put_back(full: np.ndarray, box: tuple[int, int, int, int], part: np.ndarray) -> np.ndarray:
    """A copy of ``full`` with ``part`` written into ``box``."""
    left, upper, right, lower = box
    out = full.copy()
    out[upper:lower, left:right] = part
    return out
