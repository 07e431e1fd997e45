"""hierarchy: two-stage (scan plane -> per-plane tumour expert) and flat brain-tumour MRI classifiers."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from hierarchy.labels import PLANES, TUMOR_CLASSES

try:
    __version__ = version("hierarchy")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["PLANES", "TUMOR_CLASSES", "Router", "__version__"]


def __getattr__(name: str):
    # Router pulls in torch and timm; import it only when asked for.
    if name == "Router":
        from hierarchy.routing.estimator import Router

        return Router
    raise AttributeError(f"module 'hierarchy' has no attribute {name!r}")
