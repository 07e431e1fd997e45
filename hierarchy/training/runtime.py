"""Where and how tensors are computed: device, autocast dtype and memory format, decided in one place.

Used by the trainer, the feature extractor and inference (``hierarchy.routing.trunk``). On the defaults
(``amp="auto"``, ``channels_last="auto"``) a CPU with native bf16 (AVX512-BF16 or AMX) runs inference in
bf16 autocast and training in fp32, any other CPU fp32, both in channels-last layout, and CUDA bf16 or fp16
autocast. On 2 cores, for tf_efficientnet_lite0 at 224 px, channels-last is 2-4x faster than plain fp32 for
inference and 1.7-2.2x for training; bf16 adds 1.5-3x and 1.2-1.4x (``reports/benchmarks/training_speed.md``).
``amp="off"`` (or ``HIERARCHY_AMP=off`` for every caller that passes no ``amp``) is the fp32 switch;
``amp="bf16"`` (or ``HIERARCHY_AMP=bf16``) trains in bf16 too.

Known limit (torch 2.14 CPU): under bf16 autocast in channels-last layout, a stride-2 depthwise convolution
on a 1x1 feature map returns NaN weight gradients, so train EfficientNet-style models on images of at least
24-32 px per 32x downsampling (any realistic size; mind very small ``progressive_sizes``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

AMP_MODES = ("auto", "bf16", "fp16", "off")
# What amp="auto" means when set (e.g. HIERARCHY_AMP=off): the fp32 switch for callers that pass no amp.
AMP_ENV = "HIERARCHY_AMP"
CHANNELS_LAST_MODES = ("auto", "on", "off")


@cache
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 natively (oneDNN reports AVX512-BF16 or AMX), checked once per process."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without these probes
        return False


@dataclass(frozen=True)
class Runtime:
    """A device, an autocast dtype (None: full fp32) and the memory format of 4-d tensors."""

    device: torch.device
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for this device and dtype (a no-op context when ``amp_dtype`` is None)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on this device, in this memory format when it is an image batch."""
        if x.ndim == 4:
            return x.to(self.device, non_blocking=True, memory_format=self.memory_format)
        return x.to(self.device, non_blocking=True)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move ``model`` (in place) to this device and memory format; the values are unchanged."""
        return model.to(self.device, memory_format=self.memory_format)

    def describe(self) -> str:
        """A short text such as ``cpu/bfloat16/channels_last``, for logs and cache keys."""
        dtype = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype is not None else "float32"
        layout = "channels_last" if self.memory_format == torch.channels_last else "contiguous"
        return f"{self.device.type}/{dtype}/{layout}"


def resolve_runtime(amp: str = "auto", channels_last: str = "auto",
                    device: str | torch.device | None = None, *, training: bool = False) -> Runtime:
    """The runtime for these settings.

    Parameters
    ----------
    amp : {"auto", "bf16", "fp16", "off"}
        ``auto``: bf16 on CUDA when supported (else fp16 with loss scaling); on a CPU, bf16 for inference
        where :func:`cpu_has_fast_bf16`, else fp32, and fp32 for ``training`` (bf16 training does not pay on
        these CPUs: the recipe ablation's epochs took as long as fp32 ones and scored lower; opt in with
        ``amp="bf16"``). The environment variable ``HIERARCHY_AMP`` (one of the other modes), when set,
        replaces ``auto``. ``fp16`` needs CUDA. ``off``: fp32. On a trained cpu-profile Router, bf16
        inference agrees with fp32 on 99.5-100% of BRISC test predictions per route with accuracy and ECE
        unchanged (``reports/benchmarks/training_speed.md``).
    channels_last : {"auto", "on", "off"}
        ``auto``: channels-last on CUDA, and on a CPU with oneDNN (it pays there too).
    device : str or torch.device, optional
        Defaults to CUDA when available, else the CPU.
    training : bool
        The runtime of a training loop (see ``amp``).
    """
    if amp == "auto":
        amp = os.environ.get(AMP_ENV, "auto")
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES} (also in ${AMP_ENV}), got {amp!r}")
    if channels_last not in CHANNELS_LAST_MODES:
        raise ValueError(f"channels_last must be one of {CHANNELS_LAST_MODES}, got {channels_last!r}")
    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    if amp == "fp16" and not cuda:
        raise ValueError(f"amp='fp16' needs a CUDA device, got {device}; use 'bf16' or 'off'")
    if amp == "auto":
        if cuda:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            amp_dtype = torch.bfloat16 if device.type == "cpu" and not training and cpu_has_fast_bf16() else None
    else:
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
    if channels_last == "auto":
        use_channels_last = cuda or (device.type == "cpu" and torch.backends.mkldnn.is_available())
    else:
        use_channels_last = channels_last == "on"
    return Runtime(device, amp_dtype, torch.channels_last if use_channels_last else torch.contiguous_format)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))



def pre_logit_features(model: nn.Module, x: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """float32 pre-logit features (``forward_head(forward_features(x), pre_logits=True)``) under ``runtime``.

    Call without gradients; the model should already be :meth:`Runtime.prepare`-d.
    """
    with runtime.autocast():
        features = model.forward_head(model.forward_features(runtime.batch(x)), pre_logits=True)
    return features.float()
