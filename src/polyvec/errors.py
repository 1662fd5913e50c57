"""Typed errors. Each subclasses the builtin a caller would naturally catch.

Every message says what was expected and what was got, so the caller can fix the
input without reading polyvec's source.
"""

from __future__ import annotations

__all__ = [
    "PolyvecError",
    "DimensionMismatch",
    "DTypeMismatch",
    "InvalidVector",
    "DuplicateId",
    "UnknownField",
    "UnknownCollection",
    "CollectionDropped",
    "CollectionClosed",
    "CollectionExists",
    "NotADatabase",
    "FilterError",
    "CorruptFile",
    "FormatVersionError",
    "Locked",
    "ReadOnly",
    "MissingExtra",
    "ShardUnavailable",
    "ModelMismatch",
    "InvalidPayload",
    "InvalidId",
    "InvalidArgument",
    "Unauthorized",
    "Forbidden",
    "RequestTooLarge",
    "UnknownJob",
    "UnknownReport",
    "PolyvecWarning",
]


class PolyvecError(Exception):
    """Base class of every error polyvec raises on purpose."""


class DimensionMismatch(PolyvecError, ValueError):
    """A vector or token set has the wrong number of dimensions."""


class DTypeMismatch(PolyvecError, TypeError):
    """An array has a dtype polyvec cannot store (e.g. int or object)."""


class InvalidVector(PolyvecError, ValueError):
    """A vector holds NaN/inf, is all zeros under cosine, or a token set is empty/ragged."""


class DuplicateId(PolyvecError, ValueError):
    """An id occurs twice in one batch, or `add` was given an id that already exists."""


class UnknownField(PolyvecError, KeyError):
    """A vector field name that the collection's schema does not declare."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class UnknownCollection(PolyvecError, KeyError):
    """No collection of that name exists in the database folder."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CollectionDropped(UnknownCollection):
    """The collection behind a handle was dropped (or dropped and created anew) since the
    handle was opened; get a new handle with ``Database.get_collection``."""


class CollectionClosed(PolyvecError, ValueError):
    """A call on a collection handle after its ``close()`` (like I/O on a closed file)."""


class NotADatabase(PolyvecError, FileNotFoundError):
    """``connect`` found no polyvec database at the path (a file, a folder holding other
    things, or none with ``create=False``); ``filename`` names the path."""

    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(2, f"{filename}: {reason}", filename)  # errno 2: ENOENT

    def __str__(self) -> str:
        return str(self.args[1])


class CollectionExists(PolyvecError, ValueError):
    """`create_collection` was asked for a name that is already taken."""


class FilterError(PolyvecError, ValueError):
    """A malformed payload filter. `path` names the offending node, e.g. ``$and[1].year.$gte``."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(f"{message} (at {path})" if path else message)


class CorruptFile(PolyvecError, OSError):
    """A file of the database folder failed its format or checksum checks. `filename` names it."""

    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(f"corrupt file {filename}: {reason}")
        self.filename = filename
        self.reason = reason

    def __str__(self) -> str:  # OSError would print "[Errno None] None: <filename>"
        return str(self.args[0])


class FormatVersionError(CorruptFile):
    """A file was written by a format version this polyvec cannot read."""


class Locked(PolyvecError, TimeoutError):
    """Another process holds the collection's write lock and did not release it in time."""


class ReadOnly(PolyvecError, PermissionError):
    """A write to a collection whose folder this process may not write (it is opened
    read-only: searches and reads work). ``filename`` names the path."""

    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(13, f"{filename}: {reason}", filename)  # errno 13: EACCES

    def __str__(self) -> str:
        return str(self.args[1])


class MissingExtra(PolyvecError, ImportError):
    """An optional dependency is not installed; the message gives the pip line that installs it."""


class ModelMismatch(PolyvecError, ValueError):
    """A query was embedded by a model other than the one that made the field's vectors."""


class InvalidPayload(PolyvecError, TypeError):
    """A payload that is not a JSON object of finite JSON values."""


class InvalidId(PolyvecError, TypeError):
    """An external id that is neither a str nor an int in the int64 range."""


class InvalidArgument(PolyvecError, ValueError):
    """A search or API argument out of its domain (e.g. ``k < 1``)."""


class Unauthorized(PolyvecError, PermissionError):
    """A server refused the request's API key: none was sent, or it is unknown or revoked."""


class Forbidden(PolyvecError, PermissionError):
    """A server refused the request: the API key's scope or collections do not cover it."""


class RequestTooLarge(PolyvecError, ValueError):
    """A request body over the server's limit (the message names the limit and its flag)."""


class ShardUnavailable(PolyvecError, ConnectionError):
    """No live replica of a shard of a sharded collection (``polyvec.distributed``) could
    take a write or answer a read that needs every item (a search answers without it, with
    ``info["partial"]``). ``.shards`` names them."""

    def __init__(self, message: str, shards: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.shards = shards


class UnknownJob(PolyvecError, KeyError):
    """No background job of that id on the server."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownReport(PolyvecError, KeyError):
    """No evaluation report of that name in the server's reports folder."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PolyvecWarning(UserWarning):
    """A request polyvec could not honour as asked (e.g. an index that indexed nothing)."""
