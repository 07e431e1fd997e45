"""Grad-CAM and Integrated Gradients (captum), overlays, and scores against tumour masks."""

from __future__ import annotations

from hierarchy.explain.alignment import align_mask_to_input, letterbox_mask
from hierarchy.explain.attribution import METHODS, explain
from hierarchy.explain.mask_scores import (
    binarise_mask,
    resize_mask,
    score_against_mask,
    summarise_mask_scores,
)
from hierarchy.explain.overlay import save_overlay
from hierarchy.explain.routed import explain_predictions
from hierarchy.explain.target_layers import gradcam_target_layer

__all__ = [
    "METHODS",
    "align_mask_to_input",
    "binarise_mask",
    "explain",
    "explain_predictions",
    "gradcam_target_layer",
    "letterbox_mask",
    "resize_mask",
    "save_overlay",
    "score_against_mask",
    "summarise_mask_scores",
]
