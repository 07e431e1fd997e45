"""How fast each route classifies images, decoding and preprocessing included."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from hierarchy.routing.estimator import Router
from hierarchy.routing.inputs import Inputs, resolve_inputs


def _first(inputs: Inputs, n: int) -> Inputs:
    frame = None if inputs.frame is None else inputs.frame.iloc[:n].reset_index(drop=True)
    return Inputs(inputs.ids[:n], inputs.sources[:n], frame)


def route_throughput(router: Router, inputs: Any, routes: Sequence[str], *, repeats: int = 3,
                     warmup: int = 32, batch_size: int = 32) -> dict[str, float]:
    """Images per second of each route run alone on ``inputs`` (anything ``Router.predict`` takes: a folder
    counts its images): the median of ``repeats`` timed runs, after one untimed run over the first
    ``warmup`` images (0: none)."""
    resolved = resolve_inputs(inputs)
    speeds: dict[str, float] = {}
    for route in routes:
        if warmup:
            router.predict_routes(_first(resolved, warmup), (route,), batch_size=batch_size)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            router.predict_routes(resolved, (route,), batch_size=batch_size)
            times.append(time.perf_counter() - start)
        speeds[route] = len(resolved) / statistics.median(times)
    return speeds
