"""Train-time augmentation: every part a switch (probability or range) in :class:`AugmentConfig`.

:class:`hierarchy.data.preprocess.Preprocess` applies three stages:

- acquisition, on the cropped greyscale image before intensity scaling: resampling to another
  resolution (longer side drawn from a range) and JPEG re-encoding, as between scanners and archives;
- geometry, on the padded square [0, 1] tensor: random resized crop, small rotation, horizontal
  flip where the plane allows it, and any flip or multiple of 90 degrees for every plane
  (``dihedral_p``; breaks orientation shortcuts such as upside-down storage of one class);
- intensity, on the [0, 1] tensor: random monotonic and non-monotonic curves, inversion, random
  shallow convolutions (GIN, Ouyang et al., "Causality-inspired single-source domain generalization
  for medical image segmentation", IEEE TMI 2022), gamma, brightness/contrast, a smooth
  multiplicative bias field, Gaussian blur and Gaussian noise.

All randomness comes from torch's global RNG, so ``Preprocess(..., seed=s)`` and the seeding of
DataLoader workers make every draw reproducible. Presets: ``none``, ``light`` (the original
augmentation) and ``robust`` (every part on); see :func:`augment_preset`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from hierarchy.data.perturb import jpeg_reencode, resize_longer_side
from hierarchy.settings import Settings

# Planes whose left-right mirror image is still a plausible slice of the same plane.
FLIP_PLANES = frozenset({"axial", "coronal"})


@dataclass
class AugmentConfig(Settings):
    """Probabilities (``*_p``) and ranges of each augmentation; the defaults switch everything off.

    Ranges are ``(low, high)`` pairs. ``crop_scale`` is the area fraction kept by the random resized
    crop ((1, 1): no crop); ``rotate_degrees`` the largest small rotation (0: none);
    ``bias_field_strength`` the largest standard deviation of the log bias field; ``brightness`` and
    ``contrast`` the jitter factors of ``torchvision``'s ``ColorJitter`` (0: none).
    """

    resample_p: float = 0.0
    resample_side: tuple[int, int] = (160, 256)
    jpeg_p: float = 0.0
    jpeg_quality: tuple[int, int] = (60, 95)
    crop_scale: tuple[float, float] = (1.0, 1.0)
    rotate_degrees: float = 0.0
    plane_flip_p: float = 0.0
    dihedral_p: float = 0.0
    curve_p: float = 0.0
    nonmonotonic_curve_p: float = 0.0
    invert_p: float = 0.0
    gin_p: float = 0.0
    gamma_p: float = 0.0
    gamma: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.0
    contrast: float = 0.0
    bias_field_p: float = 0.0
    bias_field_strength: float = 0.3
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_p: float = 0.0
    noise_sigma: tuple[float, float] = (0.01, 0.06)

    @classmethod
    def from_name(cls, name: str) -> AugmentConfig:
        """The preset ``name`` (one of ``AUGMENT_PRESETS``), so settings merges expand preset names."""
        return augment_preset(name)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} is a probability in [0, 1], got {value!r}")
            if isinstance(value, (list, tuple)):
                if len(value) != 2 or not 0 <= value[0] <= value[1]:
                    raise ValueError(f"{f.name} must be a (low, high) pair with 0 <= low <= high, got {value!r}")
                setattr(self, f.name, tuple(value))  # JSON gives lists back
        if self.crop_scale[1] > 1.0:
            raise ValueError(f"crop_scale must lie in (0, 1], got {self.crop_scale!r}")
        if self.gamma[0] <= 0:
            raise ValueError(f"gamma must be positive, got {self.gamma!r}")
        for name in ("rotate_degrees", "brightness", "contrast", "bias_field_strength"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


_PRESETS: dict[str, dict] = {
    "none": {},
    "light": {"resample_p": 0.3, "resample_side": (160, 256), "jpeg_p": 0.5, "jpeg_quality": (60, 95),
              "crop_scale": (0.85, 1.0), "rotate_degrees": 10.0, "plane_flip_p": 0.5, "gamma_p": 1.0,
              "gamma": (0.8, 1.25), "brightness": 0.1, "contrast": 0.1},
    "robust": {"resample_p": 0.4, "resample_side": (96, 512), "jpeg_p": 0.5, "jpeg_quality": (30, 95),
               "crop_scale": (0.8, 1.0), "rotate_degrees": 15.0, "plane_flip_p": 0.5, "dihedral_p": 0.5,
               "curve_p": 0.3, "nonmonotonic_curve_p": 0.1, "invert_p": 0.1, "gin_p": 0.3,
               "gamma_p": 0.5, "gamma": (0.6, 1.6), "brightness": 0.2, "contrast": 0.3,
               "bias_field_p": 0.3, "bias_field_strength": 0.3, "blur_p": 0.2, "blur_sigma": (0.3, 1.5),
               "noise_p": 0.3, "noise_sigma": (0.01, 0.06)},
}
AUGMENT_PRESETS: tuple[str, ...] = tuple(_PRESETS)


def augment_preset(name: str) -> AugmentConfig:
    """A fresh :class:`AugmentConfig` of the preset ``name`` (one of ``AUGMENT_PRESETS``)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; expected one of {list(_PRESETS)}")
    return AugmentConfig(**_PRESETS[name])


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _randint(low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, ()))


# -- acquisition (PIL, uint8) -------------------------------------------------------------------
class RandomResample:
    """Resample so the longer side is drawn uniformly from [low, high] px (the pipeline later
    resizes to its input size, so this leaves the resolution lost or interpolated)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __call__(self, image: Image.Image) -> Image.Image:
        return resize_longer_side(image, _randint(self.low, self.high))


class RandomJPEG:
    """Re-encode as JPEG at a quality drawn uniformly from [low, high]."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __call__(self, image: Image.Image) -> Image.Image:
        return jpeg_reencode(image, _randint(self.low, self.high))


# -- geometry (tensor) --------------------------------------------------------------------------
class RandomDihedral:
    """With probability ``p``, one of the 7 non-identity flips and multiples of 90 degrees."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.p:
            return tensor
        element = _randint(1, 7)
        tensor = torch.rot90(tensor, element % 4, dims=(-2, -1))
        return tensor.flip(-1) if element >= 4 else tensor


# -- intensity (tensor in [0, 1]) ---------------------------------------------------------------
class RandomCurve:
    """Map intensities through a random piecewise-linear curve over [0, 1] with ``knots`` inner knots.

    Monotonic curves rise from 0 to 1 (contrast reshaped, order kept); non-monotonic ones take a
    uniform random value at every knot (tissue contrasts swapped, as between MR weightings).
    """

    def __init__(self, monotonic: bool, knots: int = 3) -> None:
        self.monotonic, self.knots = monotonic, knots

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        xs = torch.cat([torch.zeros(1), torch.rand(self.knots).sort().values, torch.ones(1)])
        if self.monotonic:
            steps = torch.rand(self.knots + 1) + 0.05
            ys = torch.cat([torch.zeros(1), steps.cumsum(0) / steps.sum()])
        else:
            ys = torch.rand(self.knots + 2)
        x = tensor.clamp(0.0, 1.0)
        right = torch.searchsorted(xs, x.contiguous(), right=True).clamp(1, self.knots + 1)
        x0, x1, y0, y1 = xs[right - 1], xs[right], ys[right - 1], ys[right]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0).clamp_min(1e-6)


class RandomGIN:
    """Random shallow convolutional intensity transform (GIN), blended with the input.

    ``layers`` convolutions with random 1x1 or 3x3 kernels, ``width`` channels, normal weights and
    leaky-ReLU between them; the output is standardised to the input's mean and standard deviation,
    mixed with the input by ``alpha`` ~ U(0, 1), and min-max rescaled to [0, 1].
    """

    def __init__(self, layers: int = 4, width: int = 2) -> None:
        self.layers, self.width = layers, width

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        x = tensor[None] if tensor.dim() == 3 else tensor
        out, channels = x, x.shape[1]
        for layer in range(self.layers):
            last = layer == self.layers - 1
            width = channels if last else self.width
            k = 1 if float(torch.rand(())) < 0.5 else 3
            weight = torch.randn(width, out.shape[1], k, k)
            out = F.conv2d(out, weight, torch.randn(width), padding=k // 2)
            if not last:
                out = F.leaky_relu(out, 0.2)
        dims = (-3, -2, -1)
        out = (out - out.mean(dims, keepdim=True)) / out.std(dims, keepdim=True).clamp_min(1e-6)
        out = out * x.std(dims, keepdim=True) + x.mean(dims, keepdim=True)
        alpha = float(torch.rand(()))
        mixed = alpha * out + (1.0 - alpha) * x
        low, high = mixed.amin(dims, keepdim=True), mixed.amax(dims, keepdim=True)
        mixed = (mixed - low) / (high - low).clamp_min(1e-6)
        return mixed.reshape(tensor.shape)


class RandomGamma:
    """Raise [0, 1] intensities to a gamma drawn log-uniformly from [low, high]."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = math.log(low), math.log(high)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.clamp(0.0, 1.0) ** math.exp(_uniform(self.low, self.high))


class RandomBiasField:
    """Multiply by a smooth positive field: a ``grid`` x ``grid`` normal log-field with standard
    deviation drawn from [0, strength], upsampled bicubically to the image."""

    def __init__(self, strength: float, grid: int = 4) -> None:
        self.strength, self.grid = strength, grid

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        coarse = torch.randn(1, 1, self.grid, self.grid) * _uniform(0.0, self.strength)
        field = F.interpolate(coarse, size=tensor.shape[-2:], mode="bicubic", align_corners=True)
        return tensor * field[0].exp()


class RandomGaussianNoise:
    """Add Gaussian noise with a standard deviation drawn from [low, high]."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor + _uniform(self.low, self.high) * torch.randn(tensor.shape)


def _maybe(transform: Callable, p: float) -> list[Callable]:
    """``[transform]`` applied with probability ``p``; nothing when ``p`` is 0."""
    if p <= 0:
        return []
    return [transform] if p >= 1 else [v2.RandomApply([transform], p=p)]


def _compose(steps: list[Callable]) -> v2.Compose | None:
    return v2.Compose(steps) if steps else None


def acquisition_transform(aug: AugmentConfig) -> v2.Compose | None:
    """Resampling then JPEG re-encoding of a PIL greyscale image (None when both are off)."""
    return _compose([*_maybe(RandomResample(*aug.resample_side), aug.resample_p),
                     *_maybe(RandomJPEG(*aug.jpeg_quality), aug.jpeg_p)])


def geometric_transform(aug: AugmentConfig, size: int, plane: str | None) -> v2.Compose | None:
    """Crop, rotation and flips of a (1, size, size) tensor; horizontal flips only for ``FLIP_PLANES``."""
    steps: list[Callable] = []
    if aug.crop_scale != (1.0, 1.0):
        steps.append(v2.RandomResizedCrop(size, scale=aug.crop_scale, ratio=(0.9, 1.1), antialias=True))
    if aug.rotate_degrees > 0:
        steps.append(v2.RandomRotation(aug.rotate_degrees, interpolation=v2.InterpolationMode.BILINEAR, fill=0.0))
    if plane in FLIP_PLANES and aug.plane_flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(aug.plane_flip_p))
    if aug.dihedral_p > 0:
        steps.append(RandomDihedral(aug.dihedral_p))
    return _compose(steps)


def intensity_transform(aug: AugmentConfig) -> v2.Compose | None:
    """Curves, inversion, GIN, gamma, brightness/contrast, bias field, blur and noise of a [0, 1] tensor."""
    steps = [*_maybe(RandomCurve(monotonic=True), aug.curve_p),
             *_maybe(RandomCurve(monotonic=False), aug.nonmonotonic_curve_p),
             *([v2.RandomInvert(aug.invert_p)] if aug.invert_p > 0 else []),
             *_maybe(RandomGIN(), aug.gin_p),
             *_maybe(RandomGamma(*aug.gamma), aug.gamma_p)]
    if aug.brightness > 0 or aug.contrast > 0:
        steps.append(v2.ColorJitter(brightness=aug.brightness or None, contrast=aug.contrast or None))
    steps += _maybe(RandomBiasField(aug.bias_field_strength), aug.bias_field_p)
    low, high = aug.blur_sigma
    steps += _maybe(v2.GaussianBlur(2 * math.ceil(3 * high) + 1, sigma=(max(low, 1e-3), max(high, 1e-3))),
                    aug.blur_p)
    steps += _maybe(RandomGaussianNoise(*aug.noise_sigma), aug.noise_p)
    return _compose(steps)

