"""File digests: the parallel, memory-mapped CRC equals zlib's CRC of the whole bytes; manifest
entries of format 4 (xxh3-64) and of older formats (CRC-32) both verify, and detect a flip."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from polyvec.storage import segment
from polyvec.storage.segment import crc32_combine, file_crc32


def test_combine_equals_crc_of_concatenation() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        a = rng.bytes(int(rng.integers(0, 3000)))
        b = rng.bytes(int(rng.integers(0, 3000)))
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@pytest.mark.parametrize("size", [0, 1, 5_000_001])
def test_file_crc_in_parts_equals_zlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       size: int) -> None:
    data = np.random.default_rng(size).bytes(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_crc32(path) == zlib.crc32(data)
    # small parts and chunks: several threads, several chunks per part, uneven bounds
    monkeypatch.setattr(segment, "_PART_MIN", 1 << 20)
    monkeypatch.setattr(segment, "_CHUNK", 300_007)
    monkeypatch.setattr(segment, "_THREADS", 3)
    assert file_crc32(path) == zlib.crc32(data)
    data2 = bytearray(data)
    if size:
        data2[size // 2] ^= 1
        path.write_bytes(bytes(data2))
        assert file_crc32(path) != zlib.crc32(data)


def test_background_checks_name_the_damaged_file(tmp_path: Path) -> None:
    """``Checks`` (the open's background verification) raises, on ``wait``, a
    ``CorruptFile`` naming the first bad file in submission order; a missing file is one."""
    from polyvec.errors import CorruptFile
    from polyvec.storage.segment import Checks, file_crc32

    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(b"x" * 100_000)
    bad.write_bytes(b"y" * 100_000)
    crc_bad = file_crc32(bad)
    with open(bad, "r+b") as f:
        f.seek(5_000)
        f.write(b"z")
    checks = Checks()
    checks.file(good, [100_000, file_crc32(good)])
    checks.file(bad, [100_000, crc_bad])
    with pytest.raises(CorruptFile) as e:
        checks.wait()
    assert Path(e.value.filename) == bad
    checks = Checks()
    checks.file(tmp_path / "gone.bin", [0, 0])
    with pytest.raises(CorruptFile, match="missing"):
        checks.wait()
    checks = Checks()
    checks.file(good, [100_000, file_crc32(good)])
    checks.wait()  # all good: returns


@pytest.mark.parametrize("size", [0, 1, 9_000_001])
def test_entries_of_both_digests_verify_and_catch_a_flip(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         size: int) -> None:
    import xxhash

    from polyvec.errors import CorruptFile
    from polyvec.storage.segment import XXH3, Digest, file_entry, file_matches

    monkeypatch.setattr(segment, "_CHUNK", 300_007)  # several uneven chunks
    data = np.random.default_rng(size).bytes(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    entry = file_entry(path)
    assert entry == [size, xxhash.xxh3_64_intdigest(data), XXH3]
    streamed = Digest()
    for a in range(0, size, 1_000_003):
        streamed.update(memoryview(data)[a:a + 1_000_003])
    assert streamed.entry() == entry
    old = [size, zlib.crc32(data)]  # a format-3 entry
    assert file_matches(path, entry) and file_matches(path, old)
    if size:
        flipped = bytearray(data)
        flipped[size // 3] ^= 0x10
        path.write_bytes(bytes(flipped))
        assert not file_matches(path, entry) and not file_matches(path, old)
    with pytest.raises(CorruptFile, match="manifest entry"):
        file_matches(path, [size, 0, 7])


@pytest.mark.parametrize("damage", [(b"}", b" "), (b"'descr'", b"'d\x1bscr"),
                                    (b"\x93NUMPY", b"\x93NUMPX")])
def test_a_damaged_npy_header_is_a_corrupt_file_before_any_check(tmp_path: Path,
                                                                damage: tuple) -> None:
    """Opened without the digest check (the open hands checks to the background), a header
    numpy's parser chokes on (a tokenize error, a syntax error, a bad magic) is CorruptFile."""
    from polyvec.errors import CorruptFile

    manifest = segment.write_segment(tmp_path, "s", {"x": np.arange(12, dtype=np.float32)})
    path = tmp_path / "s" / "x.npy"
    data = path.read_bytes()
    path.write_bytes(data.replace(damage[0], damage[1], 1))  # same length
    with pytest.raises(CorruptFile, match="x.npy"):
        segment.open_segment(tmp_path / "s", {"x.npy": [len(data), *manifest["x.npy"][1:]]},
                             verify=False)["x"]
