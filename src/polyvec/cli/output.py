"""Rendering results: JSON (stdout only, strict JSON) and short human-readable tables."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from polyvec.types import SparseVector
from polyvec.wire import jsonable

__all__ = ["emit_json", "jsonable", "result_json", "search_table", "item_json", "item_lines",
           "info_lines", "short_json"]

PAYLOAD_WIDTH = 60


def emit_json(obj: Any) -> None:
    json.dump(jsonable(obj), sys.stdout, ensure_ascii=False, allow_nan=False)
    sys.stdout.write("\n")


def short_json(obj: Any, width: int = PAYLOAD_WIDTH) -> str:
    text = json.dumps(jsonable(obj), ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 3] + "..."


def _map(x: Any, f: Any) -> Any:
    return [_map(v, f) for v in x] if isinstance(x, list) else f(x)


def result_json(ids: np.ndarray, scores: np.ndarray, info: dict[str, Any],
                payloads: dict[Any, Any] | None) -> dict[str, Any]:
    """``{"ids", "scores", "info"}`` keeping the result's shape; empty slots are ``null``."""
    out: dict[str, Any] = {"ids": ids.tolist(), "scores": jsonable(scores), "info": info}
    if payloads is not None:
        out["payloads"] = _map(out["ids"], payloads.get)
    return out


def search_table(ids: np.ndarray, scores: np.ndarray, payloads: dict[Any, Any]) -> list[str]:
    """One query's hits as aligned rows: rank, id, score, payload (truncated)."""
    hits = [(str(i), float(s), short_json(payloads.get(i, {})))
            for i, s in zip(ids.tolist(), scores.tolist(), strict=True) if i is not None]
    if not hits:
        return ["(no results)"]
    w = max(2, *(len(h[0]) for h in hits))
    lines = [f"{'rank':>4}  {'id':<{w}}  {'score':>10}  payload"]
    lines += [f"{r:>4}  {i:<{w}}  {s:>10.4f}  {p}" for r, (i, s, p) in enumerate(hits, 1)]
    return lines


def item_json(item: Any, with_vectors: bool) -> dict[str, Any] | None:
    if item is None:
        return None
    out: dict[str, Any] = {"id": item.id, "payload": item.payload}
    if with_vectors:
        out["vectors"] = {n: jsonable(v._asdict() if isinstance(v, SparseVector) else v)
                          for n, v in item.vectors.items()}
    return out


def item_lines(key: Any, item: Any, with_vectors: bool) -> list[str]:
    if item is None:
        return [f"{key}  (not found)"]
    lines = [f"{item.id}  {json.dumps(item.payload, ensure_ascii=False)}"]
    if with_vectors:
        for name, v in item.vectors.items():
            if isinstance(v, SparseVector):
                pairs = ", ".join(f"{i}: {w:.4g}" for i, w in zip(v.indices.tolist(),
                                                                 v.values.tolist(), strict=True))
                lines.append(f"    {name} sparse ({len(v.indices)}): {{{pairs}}}")
                continue
            arr = np.array2string(np.asarray(v, dtype=np.float32), precision=4, threshold=12,
                                  edgeitems=3, max_line_width=10**6)
            lines.append(f"    {name} {tuple(v.shape)}: {' '.join(arr.split())}")
    return lines


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def info_lines(info: dict[str, Any]) -> list[str]:
    """``Collection.info()`` as ``key: value`` lines, with the schema and segments spelled out."""
    lines = []
    for key, value in info.items():
        if key == "schema" and isinstance(value, dict):
            lines.append("fields:")
            for name, spec in value.get("vectors", {}).items():
                rest = " ".join(f"{k}={v}" for k, v in spec.items() if k != "kind")
                lines.append(f"  {name}: {spec.get('kind')} {rest}")
            lines.append(f"indexed: {', '.join(value.get('indexed', [])) or '(none)'}")
        elif key == "segments" and isinstance(value, list):
            rows = sum(int(s.get("rows", 0)) for s in value)
            lines.append(f"segments: {len(value)} ({rows} rows)")
        elif key == "bytes_on_disk" and isinstance(value, int):
            lines.append(f"{key}: {_size(value)}")
        else:
            lines.append(f"{key}: {value}")
    return lines
