"""Property: whatever bytes a file holds, decoding it succeeds or raises ``ImageReadError`` naming it."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hierarchy.data.image_io import ImageReadError, decode_bytes, inspect_image_bytes, load_image

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    array = (np.arange(24 * 20) % 251).astype(np.uint8).reshape(24, 20)
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


VALID = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")}
formats = st.sampled_from(sorted(VALID))


def _check_file(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            image = load_image(path)
        except ImageReadError as err:
            assert str(path) in str(err)
        else:
            assert image.mode == "L"


def _check_bytes(data: bytes) -> None:
    for decode in (decode_bytes, inspect_image_bytes):
        try:
            decode(data, "where.png")
        except ImageReadError as err:
            assert str(err).startswith("where.png: ")


@SETTINGS
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    _check_bytes(data)
    _check_file(data, "random.png")


@SETTINGS
@given(formats, st.data())
def test_truncated_files(fmt, data):
    valid = VALID[fmt]
    cut = data.draw(st.integers(0, len(valid) - 1))
    _check_bytes(valid[:cut])
    _check_file(valid[:cut], f"cut.{fmt.lower()}")


@SETTINGS
@given(formats, st.data())
def test_corrupted_bytes_after_a_valid_header(fmt, data):
    valid = bytearray(VALID[fmt])
    positions = data.draw(st.lists(st.integers(8, len(valid) - 1), min_size=1, max_size=8))
    for position in positions:
        valid[position] = data.draw(st.integers(0, 255))
    _check_bytes(bytes(valid))
    _check_file(bytes(valid), f"corrupt.{fmt.lower()}")
