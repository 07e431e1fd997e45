"""The error every reader of images and scanner volumes raises for a file it cannot read (its own module, so
that the readers of plain images, DICOM and NIfTI share it without importing each other)."""

from __future__ import annotations


class ImageReadError(ValueError):
    """An image that cannot be read, is truncated, or has an unsupported pixel format."""
