"""How fast each route classifies images, decoding and preprocessing included."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from hierarchy.routing.router import Router


def route_throughput(router: Router, inputs: Any, routes: Sequence[str], *, repeats: int = 3,
                     warmup: int = 32, batch_size: int = 32) -> dict[str, float]:
    """Images per second of each route run alone on ``inputs``: the median of ``repeats`` timed runs,
    after one untimed run over the first ``warmup`` inputs (0: none)."""
    speeds: dict[str, float] = {}
    for route in routes:
        if warmup:
            router.predict_routes(inputs[:warmup], (route,), batch_size=batch_size, progress=False)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            router.predict_routes(inputs, (route,), batch_size=batch_size, progress=False)
            times.append(time.perf_counter() - start)
        speeds[route] = len(inputs) / statistics.median(times)
    return speeds
