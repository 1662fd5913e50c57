"""Indexes of Multi (token-vector) fields over sealed segments, and token pooling at write time.

``create_index("tokens", "FDE(r=20,k=5,d=16),HNSW32")`` or ``"TokenIndex(nbits=2)"`` records
the field's :class:`~polyvec.index_spec.MultiIndexSpec` in the catalog (meta ``mv_indexes``)
and builds one :class:`~polyvec.multivector.planner.MultiIndex` per sealed segment of at least
:data:`~polyvec.multivector.planner.EXACT_SEGMENT_ROWS` documents: on creation, on every seal
and after compaction. Each lives in ``indexes/<segment>.<field>.<nonce>/`` (written to a
temporary sibling, fsync'd, renamed), registered in the catalog's index table with the size
and CRC-32 of every file, verified on open and rebuilt from disk when the collection reopens.
Searches of an indexed segment run the planner (first stage + exact MaxSim rerank); the
growing segment and small segments are scanned exactly.

Dense fields keep :class:`~polyvec._indexing.IndexingMixin`'s behaviour; this mixin sits
before it in the MRO and hands every Dense call over to it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, Any

import numpy as np

from ._indexing import INDEXES, IndexingMixin
from .engine.merge import before_index
from .errors import CorruptFile, InvalidArgument
from .factory import format_multi_index, parse_multi_index
from .index_spec import MultiIndexSpec
from .spec import FieldSpec, Multi
from .storage.catalog import IndexRow
from .storage.segment import file_crc32, fsync_dir

if TYPE_CHECKING:
    from ._growing import TokenSets
    from .multivector.planner import MultiIndex, MultiQueryParams

__all__ = ["MultiIndexingMixin"]

MV_META = "mv_indexes"


class MultiIndexingMixin(IndexingMixin):
    """Mixed into :class:`~polyvec.collection.Collection` (before :class:`IndexingMixin`)."""

    _mv_specs: dict[str, str]
    _verify: bool
    _field: Callable[[str | None], tuple[str, FieldSpec]]

    # -- creating ------------------------------------------------------------------------------
    def create_index(self, field: str, spec: Any, *,
                     sample_queries: np.ndarray | None = None) -> None:
        """Build ``spec`` over every sealed segment of ``field``.

        Dense fields: a single-vector factory string (see :class:`IndexingMixin`). Multi
        fields: ``"FDE(r=..,k=..,d=..[,final=..]),<stack>"`` or ``"TokenIndex(nbits=..)"``
        (see :func:`polyvec.factory.parse_multi_index`); their candidates are reranked by
        exact MaxSim, so ``sample_queries`` (recall calibration) does not apply to them.
        """
        name, fspec = self._field(field)
        if not isinstance(fspec, Multi):
            super().create_index(field, spec, sample_queries=sample_queries)
            return
        try:
            mspec = parse_multi_index(spec) if isinstance(spec, str) else spec
        except InvalidArgument as e:
            raise InvalidArgument(f"create_index: field {name!r} is Multi: {e}") from None
        if not isinstance(mspec, MultiIndexSpec):
            raise InvalidArgument(f"create_index: field {name!r} is Multi; expected a factory "
                                  f"string such as 'FDE(r=20,k=5,d=16),HNSW32' or "
                                  f"'TokenIndex(nbits=2)', or a MultiIndexSpec, got {spec!r}")
        if sample_queries is not None:
            raise InvalidArgument(f"create_index: field {name!r} is Multi; sample_queries "
                                  "(recall calibration) apply to Dense fields only")
        if mspec.fde is not None and mspec.stack is not None:
            mspec.stack.check_dim(mspec.fde.dim_out(fspec.dim))
        with self._mutex, self._lock:
            self._refresh()
            before_index(self, name)  # few, large segments first (see engine/merge.py)
            old = [s.indexes.pop(name) for s in self._segments if name in s.indexes]
            self._mv_specs = {**self._mv_specs, name: format_multi_index(mspec)}
            built = self._build_missing_mv(name)
            with self._catalog.transaction():
                self._catalog.set_meta({MV_META: self._mv_specs})
                self._catalog.put_indexes([r for r, _, _ in built], drop_field=name)
            self._version = self._catalog.data_version()
            for _, seg, idx in built:
                seg.indexes[name] = idx
            for folder, _ in old:
                shutil.rmtree(self._index_dir() / folder, ignore_errors=True)

    def _build_missing_mv(self, field: str, segments: list[Any] | None = None
                          ) -> list[tuple[IndexRow, Any, tuple[str, Any]]]:
        from .multivector.planner import EXACT_SEGMENT_ROWS, build_multi_index

        spec = parse_multi_index(self._mv_specs[field])
        out = []
        for seg in self._segments if segments is None else segments:
            if field in seg.indexes or seg.row.nrows < EXACT_SEGMENT_ROWS:
                continue
            ts: TokenSets = seg.fields[field]
            idx = build_multi_index(ts.tokens, ts.offsets, spec)
            folder = f"{seg.row.name}.{field}.{token_hex(4)}"
            manifest = _write_folder(self._index_dir(), folder, idx.save)
            out.append((IndexRow(seg.row.name, field, folder, manifest), seg, (folder, idx)))
        return out

    def _ensure_indexes(self) -> None:
        super()._ensure_indexes()
        built = [b for field in self._mv_specs for b in self._build_missing_mv(field)]
        if not built:
            return
        with self._catalog.transaction():
            self._catalog.put_indexes([r for r, _, _ in built])
        self._version = self._catalog.data_version()
        for row, seg, idx in built:
            seg.indexes[row.field] = idx

    # -- loading -------------------------------------------------------------------------------
    def _load_indexes(self, rows: list[IndexRow], meta: dict[str, Any]) -> None:
        mv = dict(meta.get(MV_META, {}))
        prev = getattr(self, "_mv_specs", {})
        held: dict[tuple[str, str], tuple[str, Any]] = {}
        for seg in self._segments:  # keep open multi indexes away from the Dense loader
            for f in [f for f in seg.indexes if f in prev or f in mv]:
                held[(seg.row.name, f)] = seg.indexes.pop(f)
        super()._load_indexes([r for r in rows if r.field not in mv], meta)
        self._mv_specs = mv
        by_name = {s.row.name: s for s in self._segments}
        for r in rows:
            if r.field not in mv or r.segment not in by_name:
                continue
            have = held.get((r.segment, r.field))
            if have is not None and have[0] == r.folder and prev.get(r.field) == mv[r.field]:
                by_name[r.segment].indexes[r.field] = have
                continue
            by_name[r.segment].indexes[r.field] = (r.folder, self._open_mv(r, mv[r.field]))

    def _open_mv(self, row: IndexRow, spec: str) -> MultiIndex:
        from .multivector.planner import load_multi_index

        path = self.path / INDEXES / row.folder
        for rel, (size, crc) in row.manifest.items():
            f = path / rel
            if not f.is_file():
                raise CorruptFile(str(f), "file is missing")
            if f.stat().st_size != size:
                raise CorruptFile(str(f), f"expected {size} bytes, got {f.stat().st_size} "
                                          "(truncated?)")
            if self._verify and file_crc32(f) != crc:
                raise CorruptFile(str(f), "checksum mismatch (bytes changed on disk)")
        return load_multi_index(parse_multi_index(spec), path)

    # -- writing -------------------------------------------------------------------------------
    def _pool_vectors(self, data: dict[str, Any]) -> dict[str, Any]:
        """Token sets of Multi fields with ``pool_factor`` > 1, pooled (checked input in)."""
        out = dict(data)
        for name, spec in self._fields.items():
            if isinstance(spec, Multi) and spec.pool_factor > 1:
                from .multivector.pooling import pool_sets

                out[name] = pool_sets(data[name], spec.pool_factor)
        return out

    # -- searching -----------------------------------------------------------------------------
    def _multi_params(self, *, ef: int | None, nprobe: int | None, oversample: float | None,
                      candidates: int | None, rerank_depth: int | None
                      ) -> MultiQueryParams | None:
        from .multivector.planner import MultiQueryParams

        if oversample is not None:
            raise InvalidArgument("search: oversample applies to Dense fields; for a Multi "
                                  "field pass candidates= and rerank_depth=")
        if (ef, nprobe, candidates, rerank_depth) == (None, None, None, None):
            return None
        return MultiQueryParams(candidates=candidates, rerank_depth=rerank_depth,
                                nprobe=nprobe, ef=ef)

    def _search_multi_index(self, name: str, idx: MultiIndex, queries: list[np.ndarray],
                            k: int, data: TokenSets, seqs: np.ndarray,
                            mask: np.ndarray | None, target_recall: float | None,
                            params: Any, topk: Any) -> dict[str, Any]:
        """Search one segment through its multi-vector index; push the hits into ``topk``."""
        if target_recall is not None:
            raise InvalidArgument(f"search: field {name!r} has a multi-vector index, which is "
                                  "not recall-calibrated; pass candidates=/rerank_depth=/"
                                  "nprobe= instead of target_recall")
        scores, rows, info = idx.search(queries, k, data.tokens, data.offsets, params=params,
                                        selection=mask)
        hit = rows >= 0
        ids = np.where(hit, seqs[np.where(hit, rows, 0)], -1)
        for i in range(len(queries)):
            topk.push(scores[i:i + 1], ids[i], row=i)
        return info

    def _multi_info(self, name: str, used: list[dict[str, Any]]) -> dict[str, Any]:
        """What a multi-vector search reports: the spec, stages and candidate counts."""
        stages = list(dict.fromkeys(s for u in used for s in u["stages"]))
        return {"index": self._mv_specs[name], "stages": stages,
                "candidates": sum(u["candidates"] for u in used),
                "reranked": sum(u["reranked"] for u in used),
                "per_segment": [{k: u[k] for k in ("stages", "candidates", "selected")}
                                for u in used]}

    def index_info(self) -> dict[str, Any]:
        out = super().index_info()
        for field, spec in self._mv_specs.items():
            segs = [s for s in self._segments if field in s.indexes]
            tokens = sum(len(s.fields[field].tokens) for s in segs)
            ram = sum(s.indexes[field][1].nbytes_ram for s in segs)
            out[field] = {"spec": spec, "segments_indexed": len(segs),
                          "segments_exact": len(self._segments) - len(segs),
                          "ram_bytes_per_token": ram / tokens if tokens else None}
        return out


def _write_folder(parent: Path, name: str, save: Callable[[Path], None]
                  ) -> dict[str, list[int]]:
    """``save`` into ``parent/name.tmp``, fsync every file, rename; the manifest of the files
    (relative path -> [size, crc32])."""
    final, tmp = parent / name, parent / f"{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save(tmp)
    manifest: dict[str, list[int]] = {}
    for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        manifest[str(f.relative_to(tmp))] = [f.stat().st_size, file_crc32(f)]
    for d in sorted({p.parent for p in tmp.rglob("*")}, key=lambda p: -len(p.parts)):
        fsync_dir(d)
    os.replace(tmp, final)
    fsync_dir(parent)
    return manifest
