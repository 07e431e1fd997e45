"""Joint (multi-task) training: one backbone learns the main label and an auxiliary target at once.

The auxiliary head is a second ``nn.Linear`` on the backbone's pre-logit features (what its own classifier
sees), so after training both heads run on one trunk pass: e.g. the tumour classifier and a scan-plane head
(attach the latter to a copy of the backbone with :func:`hierarchy.training.attach_head`; both copies then
share a ``backbone_fingerprint``). Items without an auxiliary target (index -1) contribute the main loss only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from hierarchy.training.losses import dataset_targets


class JointModel(nn.Module):
    """A timm-API ``backbone`` plus ``aux_head``; ``forward`` returns ``(logits, aux_logits)``.

    ``logits`` are the backbone's own (its ``forward_head``, dropout included); ``aux_logits`` come from
    ``aux_head`` on the pre-logit features. ``seed`` makes the heads' initialisation reproducible.
    ``segmentation=True`` adds ``seg_head``, a 1x1 convolution from the last feature map to one tumour
    logit per position, and ``forward`` returns ``seg_logits`` of shape (n, 1, h, w) after the two;
    ``evidence=True`` adds ``evidence`` (n, classes, h, w): the backbone's own head applied at each position of
    the last feature map, whose mean over positions is the logit when the head is pooling then a linear layer
    (timm's EfficientNets). Both are training signals only (not part of a fitted Router); ``output_names``
    names what ``forward`` returns, in order.
    """

    def __init__(self, backbone: nn.Module, aux_classes: int, *, seed: int = 0, segmentation: bool = False,
                 evidence: bool = False) -> None:
        super().__init__()
        if aux_classes < 2:
            raise ValueError(f"aux_classes must be >= 2, got {aux_classes}")
        classifier = backbone.get_classifier()
        if not isinstance(classifier, nn.Linear):
            raise ValueError(f"{type(backbone).__name__}'s classifier {classifier!r} is not an nn.Linear, so the "
                             "width of its pre-logit features is unknown")
        self.backbone = backbone
        self.num_classes = classifier.out_features
        self.aux_classes = aux_classes
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.aux_head = nn.Linear(classifier.in_features, aux_classes)
            self.seg_head = nn.Conv2d(classifier.in_features, 1, kernel_size=1) if segmentation else None
        self.evidence = evidence
        self.output_names = ("logits", "aux_logits", *(("seg_logits",) if segmentation else ()),
                             *(("evidence",) if evidence else ()))

    def no_weight_decay(self) -> set[str]:
        """The backbone's parameters exempt from weight decay (timm's optimiser factory reads this)."""
        exempt = getattr(self.backbone, "no_weight_decay", lambda: set())()
        return {f"backbone.{name}" for name in exempt}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.backbone.forward_features(x)
        outputs = (self.backbone.forward_head(features),
                   self.aux_head(self.backbone.forward_head(features, pre_logits=True)))
        if self.seg_head is not None:
            outputs = (*outputs, self.seg_head(features))
        if self.evidence:
            n, c, h, w = features.shape
            per_position = self.backbone.forward_head(features.permute(0, 2, 3, 1).reshape(n * h * w, c, 1, 1))
            outputs = (*outputs, per_position.reshape(n, h, w, -1).permute(0, 3, 1, 2))
        return outputs


class AuxTargetDataset(Dataset):
    """``(x, label_index, aux_index, ...)`` items: ``base``'s ``(x, label_index)`` plus ``aux_targets[i]`` (-1:
    unknown), then whatever else ``base`` gives (a tumour mask).

    E.g. ``AuxTargetDataset(ImageDataset(frame, pp, target="label", classes=classes),
    ImageDataset(frame, pp, target="plane", classes=planes).targets)``.
    """

    def __init__(self, base: Dataset, aux_targets: Sequence[int] | np.ndarray) -> None:
        aux = np.asarray(aux_targets, dtype=np.int64)
        if aux.ndim != 1 or len(aux) != len(base):
            raise ValueError(f"need one auxiliary target per item: {len(base)} items, aux_targets of shape "
                             f"{aux.shape}")
        if (aux < -1).any():
            raise ValueError(f"auxiliary targets must be class indices or -1 (unknown), got min {aux.min()}")
        self.base, self.aux_targets = base, aux
        self.targets = dataset_targets(base)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        x, y, *rest = self.base[index]
        return (x, int(y), int(self.aux_targets[index]), *rest)

