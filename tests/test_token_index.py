"""Compressed token index (ColBERTv2 codes, WARP-style LUT search) and the MaxSim rerank.

Oracle: exact MaxSim over real MiniLM token vectors (tests/fixtures/mv_tokens.npz, 200 Debian
descriptions, 40 synopsis queries, 128-d).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polyvec._kernels.lut import (
    byte_lut,
    decode_residuals,
    gather_f32,
    lut_candidates,
    pack_residuals,
    top_per_row,
    unpack_codes,
)
from polyvec.errors import (
    CorruptFile,
    DimensionMismatch,
    FormatVersionError,
    InvalidArgument,
)
from polyvec.multivector.maxsim import maxsim_scores
from polyvec.multivector.rerank import prefetch_rows, rerank_maxsim
from polyvec.multivector.token_index import TokenIndex, _id_dtype, default_n_centroids

FIXTURE = Path(__file__).parent / "fixtures" / "mv_tokens.npz"
# declared floors: recall@10 of (candidates(50, nprobe=8) + exact rerank) against exact MaxSim,
# measured 0.990 / 0.983 / 0.965 for nbits 1 / 2 / 4 on this fixture (build defaults)
RECALL_FLOOR = 0.93
N_CAND, NPROBE = 50, 8


@pytest.fixture(scope="module")
def data() -> dict:
    z = np.load(FIXTURE)
    x = z["doc_tokens"].astype(np.float32)
    off = z["doc_offsets"]
    qt, qo = z["query_tokens"].astype(np.float32), z["query_offsets"]
    queries = [qt[qo[i]:qo[i + 1]] for i in range(len(qo) - 1)]
    exact = [maxsim_scores(q, x, off) for q in queries]
    return {"x": x, "x16": z["doc_tokens"], "off": off, "queries": queries, "exact": exact}


@pytest.fixture(scope="module")
def indexes(data: dict) -> dict[int, TokenIndex]:
    return {nbits: TokenIndex.build(data["x"], data["off"], nbits=nbits, seed=0)
            for nbits in (1, 2, 4)}


def _recall(got: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Tie-tolerant recall@k: a returned doc counts if its exact score reaches the k-th best."""
    kth = np.sort(exact)[::-1][k - 1]
    return float(np.sum(exact[got[:k]] >= kth - 1e-6)) / k


# ----------------------------------------------------------------------------- build


def test_k_rule_and_id_dtypes(data: dict, indexes: dict[int, TokenIndex]) -> None:
    assert default_n_centroids(818_184) == 8192  # ColBERTv2: 2**floor(log2(16 sqrt(n)))
    assert default_n_centroids(len(data["x"])) == 1024
    ti = indexes[2]
    assert ti.n_centroids == 1024
    assert ti.token_cids.dtype == np.uint16 and ti.post_docs.dtype == np.uint16
    assert _id_dtype(1 << 16) == np.uint16 and _id_dtype((1 << 16) + 1) == np.uint32
    np.testing.assert_allclose(np.linalg.norm(ti.centroids, axis=1), 1.0, atol=1e-5)
    # every token is assigned to its nearest centroid by inner product
    sims = data["x"][:500] @ ti.centroids.T
    np.testing.assert_allclose(sims.max(axis=1),
                               sims[np.arange(500), ti.token_cids[:500].astype(np.int64)],
                               atol=1e-6)
    # postings are contiguous per centroid, doc rows ascending within each list
    lo = ti.list_offsets
    assert lo[0] == 0 and lo[-1] == ti.n_tokens
    for c in range(0, ti.n_centroids, 97):
        docs = ti.post_docs[lo[c]:lo[c + 1]]
        assert np.all(np.diff(docs.astype(np.int64)) >= 0)
        assert np.all(ti.token_cids[np.flatnonzero(ti.token_pos >= lo[c])] >= c)


def test_bucket_tables_are_quantiles(indexes: dict[int, TokenIndex]) -> None:
    for nbits, ti in indexes.items():
        assert len(ti.cutoffs) == (1 << nbits) - 1 and len(ti.weights) == 1 << nbits
        assert np.all(np.diff(ti.cutoffs) > 0)
        # each weight (mid-quantile) lies in its bucket
        edges = np.concatenate([[-np.inf], ti.cutoffs, [np.inf]])
        assert np.all((ti.weights >= edges[:-1]) & (ti.weights <= edges[1:]))
        # buckets are about equally full over all residual values
        counts = np.bincount(unpack_codes(np.asarray(ti.post_codes), nbits).ravel(),
                             minlength=1 << nbits) / ti.post_codes.size / 8 * nbits
        np.testing.assert_allclose(counts, 1 / (1 << nbits), atol=0.05)


def test_more_bits_lower_reconstruction_error(data: dict,
                                              indexes: dict[int, TokenIndex]) -> None:
    err = {b: float(np.mean((ti.reconstruct() - data["x"]) ** 2)) for b, ti in indexes.items()}
    assert err[1] > err[2] > err[4]
    assert err[4] < 0.5 * err[2] and err[2] < 0.6 * err[1]


def test_decompressed_scores_close_to_exact(data: dict,
                                            indexes: dict[int, TokenIndex]) -> None:
    recon = indexes[4].reconstruct()
    for q, exact in zip(data["queries"][:10], data["exact"][:10], strict=True):
        approx = maxsim_scores(q, recon, data["off"])
        assert np.max(np.abs(approx - exact)) < 0.06 * len(q)
        assert np.corrcoef(approx, exact)[0, 1] > 0.98


# ----------------------------------------------------------------------------- search


def test_lut_scores_equal_maxsim_over_reconstructed_tokens(
        data: dict, indexes: dict[int, TokenIndex]) -> None:
    """Probing every centroid, the LUT score is the MaxSim of the decompressed tokens."""
    for nbits, ti in indexes.items():
        recon = ti.reconstruct()
        for q in data["queries"][:5]:
            rows, scores = ti.candidates(q, ti.n_docs, nprobe=ti.n_centroids)
            assert len(rows) == ti.n_docs
            want = maxsim_scores(q, recon, data["off"])[rows]
            np.testing.assert_allclose(scores, want, atol=2e-4, err_msg=f"nbits {nbits}")
            assert np.all(np.diff(scores) <= 0)


def test_missing_token_imputation(data: dict, indexes: dict[int, TokenIndex]) -> None:
    """A doc not reached by query token i gets the score of i's last probed centroid."""
    ti, q = indexes[2], data["queries"][0]
    cids, cscores, mse = ti.probe(q, 1)
    rows, scores = ti.candidates(q, ti.n_docs, nprobe=1)
    reached = [set(ti.post_docs[ti.list_offsets[c]:ti.list_offsets[c + 1]].tolist())
               for c in cids[:, 0]]
    recon = ti.reconstruct()
    for r, s in zip(rows[:20], scores[:20], strict=True):
        doc = recon[data["off"][r]:data["off"][r + 1]]
        want = 0.0
        for i in range(len(q)):
            if r in reached[i]:
                toks = np.flatnonzero(ti.token_cids[data["off"][r]:data["off"][r + 1]]
                                      == cids[i, 0])
                want += float((doc[toks] @ q[i]).max())
            else:
                want += float(mse[i])
        assert s == pytest.approx(want, abs=2e-4)


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_recall_candidates_plus_rerank(data: dict, indexes: dict[int, TokenIndex],
                                       nbits: int) -> None:
    ti = indexes[nbits]
    rec = []
    for q, exact in zip(data["queries"], data["exact"], strict=True):
        rows, _ = ti.candidates(q, N_CAND, nprobe=NPROBE)
        top, scores = rerank_maxsim(q, data["x16"], data["off"], rows, 10)
        np.testing.assert_allclose(scores, exact[top], rtol=1e-5, atol=1e-5)
        rec.append(_recall(top, exact))
    assert np.mean(rec) >= RECALL_FLOOR, (nbits, np.mean(rec))


def test_selection_respected_and_matches_exact_subset(data: dict,
                                                      indexes: dict[int, TokenIndex]) -> None:
    ti = indexes[2]
    rng = np.random.default_rng(1)
    sel = rng.random(ti.n_docs) < 0.3
    rec = []
    for q, exact in zip(data["queries"], data["exact"], strict=True):
        rows, _ = ti.candidates(q, N_CAND, nprobe=NPROBE, selection=sel)
        assert sel[rows].all()
        top, _ = rerank_maxsim(q, data["x"], data["off"], rows, 10)
        sub = np.where(sel, exact, -np.inf)
        rec.append(_recall(top, sub))
    assert np.mean(rec) >= RECALL_FLOOR
    # probing everything reaches exactly the selected documents
    rows, _ = ti.candidates(data["queries"][0], ti.n_docs, nprobe=ti.n_centroids,
                            selection=sel)
    assert set(rows.tolist()) == set(np.flatnonzero(sel).tolist())
    empty = ti.candidates(data["queries"][0], 10, selection=np.zeros(ti.n_docs, bool))
    assert len(empty[0]) == 0 and len(empty[1]) == 0


def test_candidates_sorted_and_bounded(data: dict, indexes: dict[int, TokenIndex]) -> None:
    ti = indexes[2]
    rows, scores = ti.candidates(data["queries"][3], 7)
    assert rows.dtype == np.int64 and scores.dtype == np.float32
    assert len(rows) == 7 and len(set(rows.tolist())) == 7
    assert np.all(np.diff(scores) <= 0)


def test_bad_inputs(data: dict, indexes: dict[int, TokenIndex]) -> None:
    ti, x, off = indexes[2], data["x"], data["off"]
    with pytest.raises(DimensionMismatch, match="expected a \\(q_tokens, 128\\)"):
        ti.candidates(np.ones((3, 64), np.float32), 10)
    with pytest.raises(InvalidArgument, match="n_candidates"):
        ti.candidates(data["queries"][0], 0)
    with pytest.raises(InvalidArgument, match="nprobe"):
        ti.candidates(data["queries"][0], 5, nprobe=0)
    with pytest.raises(InvalidArgument, match="selection"):
        ti.candidates(data["queries"][0], 5, selection=np.ones(3, bool))
    with pytest.raises(InvalidArgument, match="nbits"):
        TokenIndex.build(x, off, nbits=3)
    with pytest.raises(InvalidArgument, match="offsets"):
        TokenIndex.build(x, off[:-1], nbits=2)
    with pytest.raises(DimensionMismatch, match="multiple of 8"):
        TokenIndex.build(x[:, :12], off, nbits=1)


# ----------------------------------------------------------------------------- files


def test_save_load_round_trip(tmp_path: Path, data: dict,
                              indexes: dict[int, TokenIndex]) -> None:
    ti = indexes[4]
    ti.save(tmp_path / "ti")
    back = TokenIndex.load(tmp_path / "ti")
    assert isinstance(back.post_codes, np.memmap) and isinstance(back.post_docs, np.memmap)
    assert (back.nbits, back.n_docs, back.n_tokens, back.nbytes_ram) == \
        (ti.nbits, ti.n_docs, ti.n_tokens, ti.nbytes_ram)
    for name in ("centroids", "cutoffs", "weights", "list_offsets", "post_docs",
                 "post_codes", "token_cids", "token_pos", "doc_offsets"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ti, name), err_msg=name)
    for q in data["queries"][:5]:
        a, b = ti.candidates(q, 20, nprobe=4), back.candidates(q, 20, nprobe=4)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    manifest = json.loads((tmp_path / "ti" / "manifest.json").read_text())
    assert manifest["format"] == "polyvec.token_index" and manifest["version"] == 1


def _flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def _bad_header(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[:6] = b"XXXXXX"
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("name,damage", [
    ("post_codes.npy", _flip),
    ("post_docs.npy", _truncate),
    ("centroids.npy", _bad_header),
    ("list_offsets.npy", Path.unlink),
    ("manifest.json", Path.unlink),
    ("manifest.json", lambda p: p.write_text("{not json")),
])
def test_corrupt_file_names_the_file(tmp_path: Path, indexes: dict[int, TokenIndex],
                                     name: str, damage) -> None:
    indexes[1].save(tmp_path / "ti")
    damage(tmp_path / "ti" / name)
    with pytest.raises(CorruptFile) as exc:
        TokenIndex.load(tmp_path / "ti")
    assert exc.value.filename == name


def test_unparsable_npy_and_version(tmp_path: Path, indexes: dict[int, TokenIndex]) -> None:
    folder = tmp_path / "ti"
    indexes[1].save(folder)
    _bad_header(folder / "weights.npy")  # without the checksum pass, the header check fires
    with pytest.raises(CorruptFile, match="weights.npy"):
        TokenIndex.load(folder, verify=False)
    indexes[1].save(folder)
    m = json.loads((folder / "manifest.json").read_text())
    m["version"] = 99
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FormatVersionError, match="version"):
        TokenIndex.load(folder)
    # a consistent-looking file set with an out-of-range row must not reach the kernels
    ti = indexes[1]
    bad = TokenIndex(**{**{k: getattr(ti, k) for k in (
        "nbits", "seed", "centroids", "cutoffs", "weights", "list_offsets", "post_codes",
        "token_cids", "token_pos", "doc_offsets")}, "post_docs": ti.post_docs + 1})
    bad.save(tmp_path / "bad")
    with pytest.raises(CorruptFile, match="post_docs.npy"):
        TokenIndex.load(tmp_path / "bad")


# ----------------------------------------------------------------------------- kernels


def test_numba_equals_numpy_kernels(data: dict, indexes: dict[int, TokenIndex]) -> None:
    x = data["x"][:3000]
    for nbits, ti in indexes.items():
        cids = ti.token_cids[:3000]
        a = pack_residuals(x, ti.centroids, cids, ti.cutoffs, nbits, backend="numba")
        b = pack_residuals(x, ti.centroids, cids, ti.cutoffs, nbits, backend="numpy")
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, ti.post_codes[ti.token_pos[:3000].astype(np.int64)])
        np.testing.assert_array_equal(decode_residuals(a, ti.weights, nbits, backend="numba"),
                                      decode_residuals(a, ti.weights, nbits, backend="numpy"))
        q = data["queries"][0][0]
        lut = byte_lut(q, ti.weights, nbits)
        r = decode_residuals(a[:50], ti.weights, nbits, backend="numpy")
        np.testing.assert_allclose(lut[np.arange(a.shape[1]), a[:50]].sum(axis=1), r @ q,
                                   atol=1e-5)
        sel = np.random.default_rng(nbits).random(ti.n_docs) < 0.5
        for q in data["queries"][:4]:
            for selection in (None, sel):
                probe = ti.probe(q, 6)
                args = (q, *probe, ti.list_offsets, ti.post_docs, ti.post_codes, ti.weights,
                        nbits, selection)
                d1, s1 = lut_candidates(*args, backend="numba")
                d2, s2 = lut_candidates(*args, backend="numpy")
                o1, o2 = np.argsort(d1), np.argsort(d2)
                np.testing.assert_array_equal(d1[o1], d2[o2])
                np.testing.assert_allclose(s1[o1], s2[o2], atol=1e-5)


def test_numba_equals_numpy_probe_and_gather(tmp_path: Path, data: dict,
                                             indexes: dict[int, TokenIndex]) -> None:
    ti = indexes[2]
    S = np.concatenate(data["queries"][:5]) @ ti.centroids.T
    S[0, 10:20] = S[0].max()  # ties: the smaller centroid id first in both
    for n in (1, 7, 64, ti.n_centroids):
        a, b = top_per_row(S, n, backend="numba"), top_per_row(S, n, backend="numpy")
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    np.save(tmp_path / "tok.npy", data["x16"])
    mm = np.load(tmp_path / "tok.npy", mmap_mode="r")
    rows = np.array([5, 0, 199, 5, 77])
    for tokens in (mm, data["x16"], data["x"]):
        a, oa = gather_f32(tokens, data["off"], rows, backend="numba")
        b, ob = gather_f32(tokens, data["off"], rows, backend="numpy")
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(a, b)  # bit-exact upcast
        assert a.dtype == np.float32
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(-1, 128)
    got, _ = gather_f32(every, np.arange(len(every) + 1), np.arange(len(every)),
                        backend="numba")  # every float16 bit pattern, subnormals, inf, NaN
    want = every.astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32)[~np.isnan(want)],
                                  want.view(np.uint32)[~np.isnan(want)])
    assert np.isnan(got[np.isnan(want)]).all()


# ----------------------------------------------------------------------------- rerank


def test_rerank_equals_oracle_from_memmap(tmp_path: Path, data: dict) -> None:
    np.save(tmp_path / "tok.npy", data["x16"])
    mm = np.load(tmp_path / "tok.npy", mmap_mode="r")
    off = data["off"]
    rows = np.random.default_rng(0).choice(len(off) - 1, 60, replace=False)
    assert prefetch_rows(mm, off, rows) > 0
    assert prefetch_rows(data["x"], off, rows) == 0  # not a memmap: a no-op
    for q in data["queries"][:8]:
        oracle = maxsim_scores(q, data["x16"], off)
        top, scores = rerank_maxsim(q, mm, off, rows, 10)
        want = rows[np.lexsort((rows, -oracle[rows]))][:10]
        np.testing.assert_array_equal(top, want)
        np.testing.assert_allclose(scores, oracle[top], rtol=1e-6, atol=1e-6)
        all_rows, all_scores = rerank_maxsim(q, mm, off, rows, 1000)
        assert len(all_rows) == len(rows)
        np.testing.assert_allclose(all_scores, oracle[all_rows], rtol=1e-6, atol=1e-6)
    with pytest.raises(InvalidArgument, match="doc_rows"):
        rerank_maxsim(data["queries"][0], mm, off, np.array([len(off)]), 5)
