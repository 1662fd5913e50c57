"""Factory strings: a compact, exact view of an :class:`~polyvec.index_spec.IndexSpec`.

Grammar (tokens separated by commas, in this order)::

    [transform ,] [index ,] [codec] [, Refine]     -- at least an index or a codec
    transform := Proj<dim>[(ood[,reg=<r>])] | Prefix<dim>
    index     := Flat | HNSW<M>[(lid,efc=<n>)] | IVF<nlist>[(seed=<s>)]
    codec     := Flat | SQ8 | F16 | Binary | PQ<m>[x<nbits>][(seed=<s>)]
    refine    := Refine | Refine(x<oversample>)

``Flat`` after an index means "store full vectors" (no codec); without an index a codec is
scanned exhaustively. :func:`format_index` writes the *canonical* string: options at their
default value are left out, ``Flat`` is written only where it is the whole stack or the
storage of an IVF (``"IVF256,Flat"``), and ``Refine`` carries ``(x..)`` only when the spec
fixes the oversampling. ``parse_index(format_index(s)) == s`` for every spec ``s`` and
``format_index(parse_index(t)) == t`` for every canonical string ``t``; a few other spellings
parse too and format to their canonical form (``"HNSW32,Flat"`` -> ``"HNSW32"``,
``"Flat,SQ8"`` -> ``"SQ8"``, ``"IVF256"`` -> ``"IVF256,Flat"``, ``"PQ48x8"`` -> ``"PQ48"``,
``"Proj128(id)"`` -> ``"Proj128"``, ``"Refine(x4.0)"`` -> ``"Refine(x4)"``).

>>> spec = parse_index("Proj128(ood),HNSW32,PQ32x4,Refine(x2.5)")
>>> spec.transform, spec.codec, spec.refine
(Proj(dim=128, kind='ood', reg=0.01), PQ(m=32, nbits=4, seed=0), Refine(oversample=2.5))
>>> format_index(spec)
'Proj128(ood),HNSW32,PQ32x4,Refine(x2.5)'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import InvalidArgument
from .index_spec import IVF, SPEC_TYPES, FDESpec, Flat, IndexSpec, MultiIndexSpec, TokenIndexStage

__all__ = ["parse_index", "format_index", "parse_multi_index", "format_multi_index"]


@dataclass(frozen=True)
class _Syntax:
    """How one stage class is spelled: ``Name<num>[x<x>][(opts)]``."""

    form: str  # for error messages
    num: str | None = None  # field written right after the name (required when present)
    x: str | None = None  # field written as 'x<int>' after the number
    opts: dict[str, tuple[str, type]] = field(default_factory=dict)  # 'key=v' -> (field, type)
    flags: dict[str, tuple[str, Any]] = field(default_factory=dict)  # bare words -> (field, value)
    xopt: str | None = None  # '(x<number>)' in parentheses -> field


_SYNTAX: dict[str, _Syntax] = {
    "Proj": _Syntax("Proj<dim>[(ood,reg=<r>)]", num="dim", opts={"reg": ("reg", float)},
                    flags={"id": ("kind", "id"), "ood": ("kind", "ood")}),
    "Prefix": _Syntax("Prefix<dim>", num="dim"),
    "Flat": _Syntax("Flat"),
    "HNSW": _Syntax("HNSW<M>[(lid,efc=<n>)]", num="M", opts={"efc": ("ef_construction", int)},
                    flags={"lid": ("order", "lid")}),
    "IVF": _Syntax("IVF<nlist>[(seed=<s>)]", num="nlist", opts={"seed": ("seed", int)}),
    "SQ8": _Syntax("SQ8"),
    "F16": _Syntax("F16"),
    "Binary": _Syntax("Binary"),
    "PQ": _Syntax("PQ<m>[x<nbits>][(seed=<s>)]", num="m", x="nbits", opts={"seed": ("seed", int)}),
    "Refine": _Syntax("Refine[(x<oversample>)]", xopt="oversample"),
}
_NAMES = sorted(_SYNTAX, key=len, reverse=True)  # longest first: "Prefix" before "Proj"
_TOKEN = re.compile(r"(?P<name>" + "|".join(_NAMES) + r")(?P<num>\d+)?(?:x(?P<x>\d+))?"
                    r"(?:\((?P<opts>[^()]*)\))?")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?")
_ROLE_ORDER = {"transform": 0, "index": 1, "codec": 2, "refine": 3}


def _fmt_num(v: float | int) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def _convert(kind: type, fname: str, raw: str, err: Any) -> Any:
    if not _NUMBER.fullmatch(raw):
        raise err(f"expected a number for {fname}, got {raw!r}")
    if kind is int:
        if not raw.isdigit():
            raise err(f"expected an integer for {fname}, got {raw!r}")
        return int(raw)
    value = float(raw)
    if not math.isfinite(value):
        raise err(f"expected a finite number for {fname}, got {raw!r}")
    return value


def _parse_token(tok: str, pos: int, text: str) -> Any:
    def err(msg: str) -> InvalidArgument:
        return InvalidArgument(f"bad token {tok!r} at position {pos} of {text!r}: {msg}")

    m = _TOKEN.fullmatch(tok)
    if m is None:
        raise err(f"expected one of {[s.form for s in _SYNTAX.values()]}")
    cls, syn = SPEC_TYPES[m["name"]], _SYNTAX[m["name"]]
    kwargs: dict[str, Any] = {}
    if (m["num"] is None) != (syn.num is None) or (m["x"] is not None and syn.x is None):
        raise err(f"expected {syn.form}")
    if syn.num is not None:
        kwargs[syn.num] = int(m["num"])
    if syn.x is not None and m["x"] is not None:
        kwargs[syn.x] = int(m["x"])
    if m["opts"] is not None:
        items = [s.strip() for s in m["opts"].split(",")]
        if items == [""]:
            raise err(f"empty parentheses; expected {syn.form}")
        for item in items:
            key, eq, value = item.partition("=")
            if eq and key in syn.opts:
                fname, kind = syn.opts[key]
                parsed = _convert(kind, fname, value, err)
            elif not eq and item in syn.flags:
                fname, parsed = syn.flags[item]
            elif not eq and syn.xopt is not None and item.startswith("x"):
                fname, parsed = syn.xopt, _convert(float, syn.xopt, item[1:], err)
            else:
                raise err(f"unknown option {item!r}; expected {syn.form}")
            if fname in kwargs:
                raise err(f"option {fname!r} given twice")
            kwargs[fname] = parsed
    try:
        return cls(**kwargs)
    except InvalidArgument as e:
        raise err(str(e)) from None


def _split(text: str) -> list[tuple[str, int]]:
    """Top-level comma split (commas inside parentheses belong to options) with positions."""
    out: list[tuple[str, int]] = []
    depth, start = 0, 0
    for i, ch in enumerate(text + ","):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise InvalidArgument(f"unbalanced ')' at position {i} of {text!r}")
        elif ch == "," and depth == 0:
            raw = text[start:i]
            lead = len(raw) - len(raw.lstrip())
            out.append((raw.strip(), start + lead))
            start = i + 1
    if depth:
        raise InvalidArgument(f"unclosed '(' in {text!r}")
    return out


def parse_index(text: str) -> IndexSpec:
    """Parse a factory string into an :class:`IndexSpec`.

    >>> parse_index("HNSW32,SQ8,Refine")
    IndexSpec(transform=None, index=HNSW(M=32, ef_construction=200, order='natural'), codec=SQ8(), refine=Refine(oversample=None))
    >>> parse_index("HNSW32,FOO")
    Traceback (most recent call last):
    ...
    polyvec.errors.InvalidArgument: bad token 'FOO' at position 7 of 'HNSW32,FOO': expected one of [...]
    """  # noqa: E501
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(f"factory string: expected a non-empty str, got {text!r}")
    slots: dict[str, Any] = {}
    last_role = -1
    storage_given = False  # a codec, or 'Flat' in the codec slot
    for tok, pos in _split(text):
        if not tok:
            raise InvalidArgument(f"empty token at position {pos} of {text!r}")
        stage = _parse_token(tok, pos, text)
        role = stage.role
        if isinstance(stage, Flat) and "index" in slots:
            role = "codec"  # 'IVF256,Flat': full vectors as the storage
        here = f"token {tok!r} at position {pos} of {text!r}"
        if (role == "codec" and storage_given) or (role != "codec" and role in slots):
            raise InvalidArgument(f"duplicate {role}: {here}; expected one {role} per stack")
        if _ROLE_ORDER[role] < last_role:
            order = " -> ".join(_ROLE_ORDER)
            raise InvalidArgument(f"{role} out of order: {here}; expected the order {order}")
        last_role = _ROLE_ORDER[role]
        if role == "codec":
            storage_given = True
            if not isinstance(stage, Flat):
                slots["codec"] = stage
        else:
            slots[role] = stage
    if "index" not in slots and not storage_given:
        raise InvalidArgument(f"factory string {text!r}: expected an index (Flat, HNSW<M>, "
                              "IVF<nlist>) or a codec (SQ8, F16, Binary, PQ<m>)")
    return IndexSpec(**slots)


def _format_stage(stage: Any) -> str:
    syn = _SYNTAX[stage.name]
    default_of = {f.name: f.default for f in fields(stage)}
    out = stage.name
    if syn.num is not None:
        out += str(getattr(stage, syn.num))
    if syn.x is not None and getattr(stage, syn.x) != default_of[syn.x]:
        out += f"x{getattr(stage, syn.x)}"
    opts = []
    for word, (fname, value) in syn.flags.items():
        if getattr(stage, fname) == value and value != default_of[fname]:
            opts.append(word)
    for key, (fname, _) in syn.opts.items():
        if getattr(stage, fname) != default_of[fname]:
            opts.append(f"{key}={_fmt_num(getattr(stage, fname))}")
    if syn.xopt is not None and getattr(stage, syn.xopt) != default_of[syn.xopt]:
        opts.append(f"x{_fmt_num(getattr(stage, syn.xopt))}")
    return out + (f"({','.join(opts)})" if opts else "")


def format_index(spec: IndexSpec) -> str:
    """The canonical factory string of ``spec``.

    >>> from polyvec.index_spec import Binary, Refine
    >>> format_index(IndexSpec(index=IVF(256)))
    'IVF256,Flat'
    >>> format_index(IndexSpec(codec=Binary(), refine=Refine(4)))
    'Binary,Refine(x4)'
    """
    if not isinstance(spec, IndexSpec):
        raise InvalidArgument(f"format_index: expected an IndexSpec, got {spec!r}")
    parts = []
    if spec.transform is not None:
        parts.append(_format_stage(spec.transform))
    if not isinstance(spec.index, Flat) or spec.codec is None:
        parts.append(_format_stage(spec.index))
    if spec.codec is not None:
        parts.append(_format_stage(spec.codec))
    elif isinstance(spec.index, IVF):
        parts.append("Flat")
    if spec.refine is not None:
        parts.append(_format_stage(spec.refine))
    return ",".join(parts)



# --------------------------------------------------------------------------- multi-vector fields
#: ``FDE[(r=,k=,d=,final=,seed=)] [, <stack>]`` and ``TokenIndex[(nbits=,centroids=,seed=)]``:
#: option word -> (field, default) of FDESpec / TokenIndexStage, in canonical order
_FDE_OPTS = {"r": ("r_reps", 20), "k": ("k_sim", 5), "d": ("d_proj", 16),
             "final": ("d_final", None), "seed": ("seed", 0)}
_TI_OPTS = {"nbits": ("nbits", 2), "centroids": ("n_centroids", None), "seed": ("seed", 0)}
_MULTI_TOKEN = re.compile(r"(?P<name>FDE|TokenIndex)(?:\((?P<opts>[^()]*)\))?")


def _multi_opts(name: str, raw: str | None, table: dict[str, tuple[str, Any]], text: str
                ) -> dict[str, Any]:
    def err(msg: str) -> InvalidArgument:
        forms = ",".join(f"{k}=<n>" for k in table)
        return InvalidArgument(f"bad {name} options in {text!r}: {msg}; expected "
                               f"{name}[({forms})]")

    out: dict[str, Any] = {}
    if raw is None:
        return out
    items = [s.strip() for s in raw.split(",")]
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in table:
            raise err(f"unknown option {item!r}")
        fname = table[key][0]
        if fname in out:
            raise err(f"option {key!r} given twice")
        out[fname] = _convert(int, key, value, err)
    return out


def parse_multi_index(text: str) -> MultiIndexSpec:
    """Parse the factory string of a Multi field's index.

    ``"FDE(r=20,k=5,d=16),HNSW32"``: MUVERA encodings (``r`` repetitions, ``k`` SimHash bits,
    ``d`` projected dims, optional ``final`` dims and ``seed``) searched with the single-vector
    stack that follows (``Flat`` when none); ``"TokenIndex(nbits=2)"``: the compressed token
    index (``nbits`` 1, 2 or 4, optional ``centroids`` and ``seed``). Candidates of either are
    reranked by exact MaxSim.

    >>> format_multi_index(parse_multi_index("FDE(r=20,k=5,d=16),IVF64,PQ64"))
    'FDE,IVF64,PQ64'
    >>> parse_multi_index("TokenIndex(nbits=4)").token_index
    TokenIndexStage(nbits=4, n_centroids=None, seed=0)
    """

    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(f"factory string: expected a non-empty str, got {text!r}")
    parts = _split(text)
    head, _ = parts[0]
    m = _MULTI_TOKEN.fullmatch(head)
    if m is None:
        raise InvalidArgument(f"bad token {head!r} at position 0 of {text!r}: expected "
                              "FDE[(r=,k=,d=,final=,seed=)] or TokenIndex[(nbits=,centroids=,"
                              "seed=)] first")
    if m["name"] == "TokenIndex":
        if len(parts) > 1:
            raise InvalidArgument(f"factory string {text!r}: TokenIndex takes no stack after it, "
                                  f"got {parts[1][0]!r} at position {parts[1][1]}")
        opts = _multi_opts("TokenIndex", m["opts"], _TI_OPTS, text)
        return MultiIndexSpec(token_index=TokenIndexStage(**opts))
    opts = _multi_opts("FDE", m["opts"], _FDE_OPTS, text)
    rest = text[parts[1][1]:] if len(parts) > 1 else "Flat"
    return MultiIndexSpec(fde=FDESpec(**opts), stack=parse_index(rest))


def _format_multi_opts(name: str, obj: Any, table: dict[str, tuple[str, Any]]) -> str:
    opts = [f"{k}={getattr(obj, f)}" for k, (f, default) in table.items()
            if getattr(obj, f) != default]
    return name + (f"({','.join(opts)})" if opts else "")


def format_multi_index(spec: MultiIndexSpec) -> str:
    """The canonical factory string of a Multi field's index spec (defaults left out).

    >>> format_multi_index(parse_multi_index("FDE(r=10,final=1024)"))
    'FDE(r=10,final=1024),Flat'
    """
    if not isinstance(spec, MultiIndexSpec):
        raise InvalidArgument(f"format_multi_index: expected a MultiIndexSpec, got {spec!r}")
    if spec.token_index is not None:
        return _format_multi_opts("TokenIndex", spec.token_index, _TI_OPTS)
    return _format_multi_opts("FDE", spec.fde, _FDE_OPTS) + "," + format_index(
        spec.stack or IndexSpec())
