"""Valid acquisition shift: random, class-preserving changes of how a brain slice was acquired.

A slice from another scanner is still a brain slice the model can judge; an out-of-distribution score should
tolerate what differs between scanners and protocols and flag only what it cannot judge. :func:`valid_shift`
draws such a change of one image (each step with the probability in :data:`VALID_SHIFT_STEPS`):

- *resolution*: the image downsampled and brought back to its size, either isotropically (longer side drawn
  from 96-240 px, about 1-2.5 mm for a 24 cm field of view) or along one axis only by a factor 2-4 (a slice
  resliced across thick acquired slices);
- *histogram matching*: intensities mapped onto those of another image's head (a different scanner's contrast,
  :func:`hierarchy.data.counterfactual.match_intensity`);
- *geometry*: a small rotation (up to 10 degrees), zoom (0.9-1.15, a zoom-in crops the field of view) and shift;
- *intensity* (:func:`hierarchy.data.augment.intensity_transform` with :data:`VALID_SHIFT`): gamma 0.7-1.45,
  brightness and contrast jitter, a smooth multiplicative bias field and a mild Gaussian blur;
- *Rician noise*: the magnitude of the image plus complex Gaussian noise (sd 0.005-0.04 of the range), as a
  magnitude MR image has.

Nothing here inverts contrast, swaps tissue contrasts, wraps intensities or moves anatomy apart: those make an
image the model cannot judge (:func:`hierarchy.experiment.ood_suite.corrupt`). Randomness comes from a numpy
generator only (torch's global RNG is forked and restored around the draws).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.functional import pil_to_tensor

from hierarchy.data.augment import AugmentConfig, intensity_transform
from hierarchy.data.counterfactual import head_of, match_intensity
from hierarchy.data.image_io import load_image
from hierarchy.data.perturb import resize_longer_side

VALID_SHIFT_STEPS = {"resolution": 0.7, "histogram_match": 0.3, "geometry": 1.0, "intensity": 1.0,
                     "rician_noise": 0.5}
VALID_SHIFT = AugmentConfig(gamma_p=0.8, gamma=(0.7, 1.45), brightness=0.15, contrast=0.25, bias_field_p=0.5,
                            bias_field_strength=0.3, blur_p=0.3, blur_sigma=(0.3, 1.2))
_GEOMETRY = v2.RandomAffine(degrees=10.0, translate=(0.05, 0.05), scale=(0.9, 1.15),
                            interpolation=v2.InterpolationMode.BILINEAR, fill=0.0)
_INTENSITY = intensity_transform(VALID_SHIFT)


def lower_resolution(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """``image`` downsampled and resized back: isotropically (longer side 96-240 px; no loss for an image
    already that small) or, half the time, along one random axis by a factor 2-4."""
    size = image.size
    if rng.random() < 0.5:
        small = resize_longer_side(image, int(rng.integers(96, 241)))
    else:
        axis, factor = int(rng.integers(2)), float(rng.uniform(2.0, 4.0))
        shape = [size[0], size[1]]
        shape[axis] = max(1, round(shape[axis] / factor))
        small = image.resize(tuple(shape), Image.Resampling.BICUBIC, reducing_gap=None)
    return small.resize(size, Image.Resampling.BICUBIC)


def rician_noise(array: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``array`` (float) plus complex Gaussian noise of standard deviation ``sigma``."""
    return np.hypot(array + rng.normal(0.0, sigma, array.shape), rng.normal(0.0, sigma, array.shape))


def valid_shift(image: Image.Image, rng: np.random.Generator,
                references: Sequence[Image.Image] = ()) -> Image.Image:
    """One random valid acquisition shift of ``image`` (8-bit greyscale out, same size); ``references`` are the
    images whose intensity histograms a *histogram matching* step may take (none: that step is skipped)."""
    image = load_image(image)
    apply = {step: bool(rng.random() < p) for step, p in VALID_SHIFT_STEPS.items()}
    if apply["resolution"]:
        image = lower_resolution(image, rng)
    array = np.asarray(image)
    if apply["histogram_match"] and len(references):
        reference = np.asarray(load_image(references[int(rng.integers(len(references)))]))
        array = match_intensity(array, reference, head_of(array), head_of(reference)).clip(0, 255).astype(np.uint8)
    tensor = pil_to_tensor(Image.fromarray(array)).float() / 255.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**31)))
        tensor = _GEOMETRY(tensor) if apply["geometry"] else tensor
        tensor = _INTENSITY(tensor) if apply["intensity"] else tensor
    out = tensor[0].clamp(0.0, 1.0).numpy().astype(np.float64)
    if apply["rician_noise"]:
        out = rician_noise(out, float(rng.uniform(0.005, 0.04)), rng)
    return Image.fromarray(np.round(out.clip(0.0, 1.0) * 255).astype(np.uint8))


def valid_shifts(paths: Sequence[str], seed: int, references: Sequence[Image.Image | str] = ()) -> list[Image.Image]:
    """One :func:`valid_shift` of each image in ``paths``, in order, all from one generator seeded ``seed``;
    ``references`` (images or paths) as :func:`valid_shift`'s."""
    rng = np.random.default_rng(seed)
    references = [load_image(r) for r in references]
    return [valid_shift(load_image(p), rng, references) for p in paths]
