"""``/metrics``: Prometheus text exposition of one worker's counters and its collections.

Each worker process counts its own requests (label ``pid``): scrape every worker, or sum them
in the query. Collection gauges come from ``Collection.info()``, read at scrape time.

>>> m = Metrics()
>>> m.observe("POST", "/v1/collections/{name}/search", 200, 0.0012)
>>> text = m.render([])
>>> 'polyvec_requests_total{method="POST",route="/v1/collections/{name}/search",status="200"' \\
...     in text
True
"""

from __future__ import annotations

import bisect
import os
import threading
from typing import Any

__all__ = ["BUCKETS", "Metrics"]

# request latency buckets, seconds: a fast search is ~1 ms, an index build minutes
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 60.0)


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**kv: object) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in kv.items()) + "}"


class Metrics:
    """Request counts and latency histograms per route (the route's template, so an id in a
    path does not make a series of its own)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}  # buckets..., +Inf, sum

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._mutex:
            key = (method, route, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._latency.setdefault((method, route), [0.0] * (len(BUCKETS) + 2))
            hist[bisect.bisect_left(BUCKETS, seconds)] += 1
            hist[-1] += seconds

    def render(self, collections: list[tuple[str, dict[str, Any]]]) -> str:
        """The exposition text: this worker's requests, then each collection's gauges
        (``collections``: name and ``info()`` pairs)."""
        pid = os.getpid()
        out = ["# HELP polyvec_requests_total HTTP requests answered by this worker.",
               "# TYPE polyvec_requests_total counter"]
        with self._mutex:
            requests = dict(self._requests)
            latency = {k: list(v) for k, v in self._latency.items()}
        for (method, route, status), n in sorted(requests.items()):
            out.append(f"polyvec_requests_total"
                       f"{_labels(method=method, route=route, status=status, pid=pid)} {n}")
        out += ["# HELP polyvec_request_seconds Request latency in this worker.",
                "# TYPE polyvec_request_seconds histogram"]
        for (method, route), hist in sorted(latency.items()):
            running = 0.0
            for le, count in zip([*map(str, BUCKETS), "+Inf"], hist[:-1], strict=True):
                running += count
                out.append("polyvec_request_seconds_bucket"
                           f"{_labels(method=method, route=route, le=le, pid=pid)} {running:g}")
            base = _labels(method=method, route=route, pid=pid)
            out.append(f"polyvec_request_seconds_sum{base} {hist[-1]:.6f}")
            out.append(f"polyvec_request_seconds_count{base} {running:g}")
        gauges = {"items": "live items", "segments": "sealed segments",
                  "growing_rows": "rows not sealed yet", "bytes_on_disk": "bytes of the folder"}
        for name, text in gauges.items():
            out += [f"# HELP polyvec_collection_{name} {text.capitalize()}.",
                    f"# TYPE polyvec_collection_{name} gauge"]
            for coll, info in collections:
                value = {"items": info["count"], "segments": len(info["segments"])}.get(
                    name, info.get(name))
                out.append(f"polyvec_collection_{name}{_labels(collection=coll)} {value}")
        out += ["# HELP polyvec_index_segments Sealed segments indexed (state=indexed) or "
                "searched exactly (state=exact), per field and index.",
                "# TYPE polyvec_index_segments gauge"]
        for coll, info in collections:
            for field, idx in info["indexes"].items():
                for state in ("indexed", "exact"):
                    labels = _labels(collection=coll, field=field, spec=idx.get("spec", ""),
                                     state=state)
                    out.append(f"polyvec_index_segments{labels} "
                               f"{idx.get(f'segments_{state}', 0)}")
        return "\n".join(out) + "\n"
