"""Factory strings <-> IndexSpec: exact round trips, canonical forms, errors naming the token."""

from __future__ import annotations

import doctest
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyvec.factory as factory_mod
import polyvec.index_spec as spec_mod
from polyvec.errors import InvalidArgument
from polyvec.factory import format_index, parse_index
from polyvec.index_spec import (
    DEFAULT_OVERSAMPLE,
    F16,
    HNSW,
    IVF,
    PQ,
    SPEC_TYPES,
    SQ8,
    Binary,
    Flat,
    IndexSpec,
    Prefix,
    Proj,
    Refine,
    stage_from_dict,
)

CANONICAL = [
    # the issue's five
    "HNSW32,SQ8,Refine",
    "IVF1024,PQ48,Refine",
    "Proj128,HNSW32,Refine",
    "Binary,Refine(x4)",
    "Prefix128,HNSW32,Refine",
    # plain indexes and storages
    "Flat",
    "HNSW16",
    "IVF256,Flat",
    "SQ8",
    "F16,Refine",
    "PQ32x4",
    "HNSW32,F16,Refine(x2)",
    "IVF1024,PQ48x4,Refine",
    "HNSW32,Refine",  # refine without a compressed stage: allowed, a no-op rescoring
    "Flat,Refine",
    # transforms and options
    "Proj128(ood),HNSW32,Refine",
    "Proj64(ood,reg=0.1),IVF256,SQ8,Refine(x2.5)",
    "Proj128,Flat",
    "Prefix256,Flat,Refine(x10)",
    "HNSW64(efc=400),Binary,Refine(x8)",
    "HNSW32(lid),SQ8,Refine",
    "HNSW16(lid,efc=80)",
    "IVF4096(seed=7),PQ96x4(seed=3),Refine(x1.5)",
    "Prefix64,IVF100,Binary,Refine",
    "Proj32(ood,reg=1e-05),PQ8x12,Refine",
]

ALIASES = {  # other accepted spellings -> their canonical form
    "HNSW32,Flat": "HNSW32",
    "Flat,SQ8": "SQ8",
    "Flat,Flat": "Flat",
    "IVF256": "IVF256,Flat",
    "PQ48x8": "PQ48",
    "Proj128(id),Flat": "Proj128,Flat",
    "HNSW32(efc=200)": "HNSW32",
    "HNSW32(efc=80,lid)": "HNSW32(lid,efc=80)",
    "Binary,Refine(x4.0)": "Binary,Refine(x4)",
    " HNSW32 , SQ8 ,Refine": "HNSW32,SQ8,Refine",
    "Proj64(reg=0.01,ood),HNSW8": "Proj64(ood),HNSW8",
}

BAD = [  # (string, words the message must contain)
    ("FOO", ["'FOO'", "position 0"]),
    ("HNSW32,FOO", ["'FOO'", "position 7"]),
    ("HNSW0", ["'HNSW0'", "M an int in [2, 512], got 0"]),
    ("HNSW", ["'HNSW'", "HNSW<M>"]),
    ("PQ8x17", ["'PQ8x17'", "nbits", "got 17"]),
    ("PQ8(seed=x)", ["seed", "'x'"]),
    ("PQ8(bits=4)", ["unknown option 'bits=4'", "seed=<s>"]),
    ("SQ8,PQ8", ["duplicate codec", "'PQ8'", "position 4"]),
    ("IVF256,Flat,SQ8", ["duplicate codec", "'SQ8'", "position 12"]),
    ("HNSW32,IVF8", ["duplicate index", "'IVF8'", "position 7"]),
    ("Proj128,Prefix64,Flat", ["duplicate transform", "'Prefix64'"]),
    ("SQ8,HNSW32", ["out of order", "'HNSW32'", "position 4"]),
    ("Refine,HNSW32", ["out of order", "'HNSW32'"]),
    ("HNSW32,Proj128", ["out of order", "'Proj128'"]),
    ("HNSW32,,SQ8", ["empty token", "position 7"]),
    ("HNSW32,", ["empty token", "position 7"]),
    ("Refine", ["expected an index", "or a codec"]),
    ("Proj128", ["expected an index"]),
    ("Refine(x0.5)", ["oversample", ">= 1.0", "0.5"]),
    ("Refine(xinf)", ["'inf'"]),
    ("Refine()", ["empty parentheses"]),
    ("Proj128(reg=0.1),Flat", ["reg applies to kind='ood' only"]),
    ("Proj128(ood,id),Flat", ["given twice"]),
    ("HNSW32(", ["unclosed '('"]),
    ("HNSW32)", ["unbalanced ')'", "position 6"]),
    ("hnsw32", ["'hnsw32'"]),
    ("", ["non-empty"]),
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_strings_round_trip(text: str) -> None:
    spec = parse_index(text)
    assert format_index(spec) == text
    assert parse_index(format_index(spec)) == spec
    # and the dict form is JSON-safe and exact
    assert IndexSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_the_issue_strings_parse_to_the_expected_specs() -> None:
    assert parse_index("HNSW32,SQ8,Refine") == IndexSpec(index=HNSW(32), codec=SQ8(),
                                                         refine=Refine())
    assert parse_index("IVF1024,PQ48,Refine") == IndexSpec(index=IVF(1024), codec=PQ(48),
                                                           refine=Refine())
    assert parse_index("Proj128,HNSW32,Refine") == IndexSpec(Proj(128), HNSW(32), None,
                                                             Refine())
    assert parse_index("Binary,Refine(x4)") == IndexSpec(index=Flat(), codec=Binary(),
                                                         refine=Refine(4.0))
    assert parse_index("Prefix128,HNSW32,Refine").transform == Prefix(128)
    assert parse_index("HNSW32,F16,Refine(x2)").codec == F16()
    assert parse_index("IVF1024,PQ48x4,Refine").codec == PQ(48, nbits=4)


@pytest.mark.parametrize("alias,canonical", ALIASES.items())
def test_aliases_format_to_their_canonical_form(alias: str, canonical: str) -> None:
    assert parse_index(alias) == parse_index(canonical)
    assert format_index(parse_index(alias)) == canonical


@pytest.mark.parametrize("text,words", BAD)
def test_malformed_strings_name_the_token_and_position(text: str, words: list[str]) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_index(text)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


_transforms = st.one_of(
    st.none(),
    st.builds(Prefix, st.integers(1, 4096)),
    st.builds(Proj, st.integers(1, 4096)),
    st.builds(Proj, st.integers(1, 4096), st.just("ood"),
              st.floats(0, 10, allow_nan=False) | st.sampled_from([0.01, 1e-5, 0.0])),
)
_indexes = st.one_of(st.just(Flat()), st.builds(HNSW, st.integers(2, 512), st.integers(1, 999)),
                     st.builds(IVF, st.integers(1, 1 << 20), st.integers(0, 2**31 - 1)))
_codecs = st.one_of(st.none(), st.just(SQ8()), st.just(F16()), st.just(Binary()),
                    st.builds(PQ, st.integers(1, 512), st.integers(1, 16), st.integers(0, 99)))
_refines = st.one_of(st.none(), st.just(Refine()),
                     st.builds(Refine, st.floats(1, 1e6, allow_nan=False)))


@settings(max_examples=300, deadline=None)
@given(st.builds(IndexSpec, _transforms, _indexes, _codecs, _refines))
def test_every_spec_round_trips(spec: IndexSpec) -> None:
    text = format_index(spec)
    assert parse_index(text) == spec
    assert format_index(parse_index(text)) == text
    assert IndexSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_spec_validation() -> None:
    bad = [
        (lambda: HNSW(M=0), "HNSW: expected M an int in [2, 512], got 0"),
        (lambda: HNSW(ef_construction=True), "ef_construction an int >= 1, got True"),
        (lambda: IVF(0), "nlist an int >= 1"),
        (lambda: PQ(8, nbits=0), "nbits an int in [1, 16]"),
        (lambda: PQ(8, seed=-1), "seed"),
        (lambda: Proj(0), "dim an int >= 1"),
        (lambda: Proj(8, kind="pca"), "kind 'id' or 'ood', got 'pca'"),
        (lambda: Proj(8, "ood", reg=float("nan")), "reg a finite number"),
        (lambda: Prefix(1.5), "dim an int"),  # type: ignore[arg-type]
        (lambda: Refine(0.9), "oversample a finite number >= 1.0, got 0.9"),
        (lambda: IndexSpec(codec=HNSW()),  # type: ignore[arg-type]
         "IndexSpec(codec=...): expected a codec stage"),
        (lambda: IndexSpec(index=None), "expected an index stage"),  # type: ignore[arg-type]
        (lambda: IndexSpec(transform=SQ8()),  # type: ignore[arg-type]
         "expected a transform stage"),
    ]
    for make, words in bad:
        with pytest.raises(InvalidArgument) as info:
            make()
        assert words in str(info.value)


def test_dict_form_errors() -> None:
    with pytest.raises(InvalidArgument, match="'type' in"):
        stage_from_dict({"type": "LSH"})
    keys = r"expected keys among \['M', 'ef_construction', 'order'\]"
    with pytest.raises(InvalidArgument, match=keys):
        stage_from_dict({"type": "HNSW", "M": 16, "efc": 3})
    with pytest.raises(InvalidArgument, match="missing"):
        stage_from_dict({"type": "PQ"})
    with pytest.raises(InvalidArgument, match="expected a codec, got HNSW"):
        stage_from_dict({"type": "HNSW"}, role="codec")
    with pytest.raises(InvalidArgument, match="keys among"):
        IndexSpec.from_dict({"index": {"type": "Flat"}, "quantizer": None})
    assert IndexSpec.from_dict({}) == IndexSpec()
    assert PQ(48, 4).to_dict() == {"type": "PQ", "m": 48, "nbits": 4, "seed": 0}


def test_check_dim_at_build_time() -> None:
    assert parse_index("PQ7").codec == PQ(7)  # fine at parse time...
    with pytest.raises(InvalidArgument, match=r"PQ7: .* dimension 384, got 384 % 7 = 6"):
        parse_index("PQ7").check_dim(384)  # ...refused when the dimension is known
    assert parse_index("Proj128,HNSW32,PQ16,Refine").check_dim(384) == 128
    with pytest.raises(InvalidArgument, match="Proj512: expected a dim <= the field's 384"):
        parse_index("Proj512,Flat").check_dim(384)
    assert parse_index("HNSW32,SQ8").check_dim(384) == 384


def test_refine_oversample_is_a_query_default() -> None:
    assert Refine().effective() == DEFAULT_OVERSAMPLE
    assert Refine(2).effective() == 2.0
    assert Refine(2).effective(8) == 8.0  # the query wins
    with pytest.raises(InvalidArgument, match="oversample"):
        Refine().effective(0.5)
    assert not parse_index("HNSW32,Refine").compressed
    assert parse_index("Proj64,HNSW32,Refine").compressed


def test_every_stage_has_a_spelling_and_docs_run() -> None:
    assert set(factory_mod._SYNTAX) == set(SPEC_TYPES)
    for mod in (factory_mod, spec_mod):
        assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0
