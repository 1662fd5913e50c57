"""Token pooling on real MiniLM token vectors (tests/fixtures/mv_tokens.npz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import polyvec as pv
from polyvec._kernels.ward import ward_labels, ward_labels_numpy
from polyvec.errors import InvalidArgument
from polyvec.multivector import maxsim_scores
from polyvec.multivector.pooling import pool_sets, pool_tokens, pooled_count
from polyvec.spec import Multi, field_from_dict

FIXTURE = Path(__file__).parent / "fixtures" / "mv_tokens.npz"


@pytest.fixture(scope="module")
def docs() -> list[np.ndarray]:
    z = np.load(FIXTURE)
    t, o = z["doc_tokens"].astype(np.float32), z["doc_offsets"]
    return [t[o[i]:o[i + 1]] for i in range(len(o) - 1)]


def test_factor_two_halves_the_tokens(docs: list[np.ndarray]) -> None:
    pooled = pool_sets(docs, 2)
    n_before = sum(len(d) for d in docs)
    n_after = sum(len(p) for p in pooled)
    assert all(len(p) == pooled_count(len(d), 2) <= (len(d) + 1) // 2 + 1
               for d, p in zip(docs, pooled, strict=True))
    assert 0.49 <= n_after / n_before <= 0.52
    for d, p in zip(docs[:20], pooled[:20], strict=True):
        np.testing.assert_array_equal(p[0], d[0])  # the first token is kept as is
        np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, rtol=1e-4)
    assert sum(len(p) for p in pool_sets(docs, 4)) / n_before < 0.27
    assert pool_sets(docs[:3], 1) == docs[:3]


def test_clusters_are_ward_means(docs: list[np.ndarray]) -> None:
    """Each pooled vector is the normalized mean of one Ward cluster (checked against an
    independent Ward: scipy's, whose merge order is the same on these data)."""
    hierarchy = pytest.importorskip(
        "scipy.cluster.hierarchy",
        reason="needs scipy, the reference Ward (installed by the [models] or [eval] extra)")
    for d in docs[:15]:
        rest = d[1:].astype(np.float64)
        m = pooled_count(len(d), 2) - 1
        ours = ward_labels(rest, m)
        ref = hierarchy.fcluster(hierarchy.linkage(rest, method="ward"), m, "maxclust")
        # same partition (labels may be numbered differently)
        pairs = set(zip(ours.tolist(), ref.tolist(), strict=True))
        assert len(pairs) == m == len(set(ours.tolist()))
        pooled = pool_tokens(d, 2)
        for c in range(m):
            mean = rest[ours == c].mean(axis=0)
            np.testing.assert_allclose(pooled[1 + c], mean / np.linalg.norm(mean), atol=1e-5)


def test_numba_equals_numpy(docs: list[np.ndarray]) -> None:
    for d in docs[:30]:
        for m in (1, max(len(d) // 3, 1), max(len(d) - 2, 1)):
            np.testing.assert_array_equal(ward_labels_numpy(d, m),
                                          ward_labels(d, m, backend="numba"))


def test_pooled_maxsim_stays_close(docs: list[np.ndarray]) -> None:
    z = np.load(FIXTURE)
    qt, qo = z["query_tokens"].astype(np.float32), z["query_offsets"]
    t = np.concatenate(docs)
    o = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=o[1:])
    pooled = pool_sets(docs, 2)
    pt = np.concatenate(pooled)
    po = np.zeros(len(pooled) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pooled], out=po[1:])
    hits = 0
    for i, rel in enumerate(z["relevant"]):
        q = qt[qo[i]:qo[i + 1]]
        full, pool = maxsim_scores(q, t, o), maxsim_scores(q, pt, po)
        hits += rel in np.argsort(-pool)[:10]
        assert np.corrcoef(full, pool)[0, 1] > 0.9
    assert hits >= 34  # of 40; unpooled: measured 36


def test_field_option_round_trips_and_pools_on_write(tmp_path: Path,
                                                     docs: list[np.ndarray]) -> None:
    spec = Multi(128, pool_factor=2)
    assert field_from_dict(spec.to_dict()) == spec
    assert field_from_dict({"kind": "multi", "dim": 128}).pool_factor == 1  # older schemas
    with pytest.raises(InvalidArgument, match="pool_factor"):
        Multi(128, pool_factor=0)
    db = pv.connect(tmp_path / "db")
    coll = db.create_collection("c", {"t": spec})
    coll.add(list(range(10)), {"t": docs[:10]})
    coll.flush()
    got = coll.get([3])[0]
    assert got is not None and len(got.vectors["t"]) == pooled_count(len(docs[3]), 2)
    db.close()
    assert pv.connect(tmp_path / "db").get_collection("c").schema.fields["t"] == spec
