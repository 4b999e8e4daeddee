"""Codecs for streams of integer symbols (a registry): each stream of an encoded model is written
with whichever is smallest for it, and the file records which.

- `packed`: fixed width, ceil(log2(alphabet)) bits per symbol (the quantised model, uncoded);
- `huffman`: canonical Huffman codes (Deep Compression's choice);
- `deflate`: zlib's raw deflate, level 9, on the symbols as bytes (uint8, or uint16 little-endian);
- `lzma`: LZMA2 (raw, preset 9 extreme) on the same bytes, after one byte giving log2 of its
  dictionary size (the smallest power of two that holds the stream: a 64 MiB dictionary for a
  few kilobytes costs seconds of allocation).
"""

from __future__ import annotations

import lzma
import math
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..registry import Registry
from . import huffman

LZMA_PRESET = 9 | lzma.PRESET_EXTREME
LZMA_DICTIONARY_BITS = range(12, 27)  # dictionary of 4 KiB .. 64 MiB: the smallest that holds the stream


@dataclass(frozen=True)
class Codec:
    name: str
    encode: Callable[[np.ndarray, int], bytes]  # (symbols in [0, alphabet), alphabet) -> bytes
    decode: Callable[[bytes, int, int], np.ndarray]  # (bytes, symbol count, alphabet) -> symbols (int64)


_CODECS: Registry[Codec] = Registry("codec")


def list_codecs() -> list[str]:
    return _CODECS.names()


def get_codec(name: str) -> Codec:
    return _CODECS.get(name)


def _width(alphabet: int) -> int:
    return max(1, math.ceil(math.log2(max(alphabet, 2))))


def _pack(symbols: np.ndarray, alphabet: int) -> bytes:
    width = _width(alphabet)
    shifts = np.arange(width - 1, -1, -1)
    bits = (np.asarray(symbols, dtype=np.int64)[:, None] >> shifts) & 1
    return np.packbits(bits.astype(np.uint8).reshape(-1)).tobytes()


def _unpack(data: bytes, count: int, alphabet: int) -> np.ndarray:
    width = _width(alphabet)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if len(bits) < count * width:
        raise ValueError(f"packed: {len(bits)} bits hold fewer than {count} symbols of {width} bits")
    return bits[: count * width].reshape(count, width).astype(np.int64) @ (1 << np.arange(width - 1, -1, -1))


def _as_bytes(symbols: np.ndarray, alphabet: int) -> bytes:
    return np.asarray(symbols).astype(np.uint8 if alphabet <= 256 else "<u2").tobytes()


def _from_bytes(data: bytes, count: int, alphabet: int) -> np.ndarray:
    symbols = np.frombuffer(data, dtype=np.uint8 if alphabet <= 256 else "<u2")
    if len(symbols) != count:
        raise ValueError(f"stream holds {len(symbols)} symbols, expected {count}")
    return symbols.astype(np.int64)


def _deflate(symbols: np.ndarray, alphabet: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return compressor.compress(_as_bytes(symbols, alphabet)) + compressor.flush()


def _inflate(data: bytes, count: int, alphabet: int) -> np.ndarray:
    try:
        return _from_bytes(zlib.decompress(data, -15), count, alphabet)
    except zlib.error as error:
        raise ValueError(f"deflate: {error}") from None


def _filters(bits: int) -> list[dict]:
    return [{"id": lzma.FILTER_LZMA2, "preset": LZMA_PRESET, "dict_size": 1 << bits}]


def _lzma(symbols: np.ndarray, alphabet: int) -> bytes:
    data = _as_bytes(symbols, alphabet)
    bits = next((bits for bits in LZMA_DICTIONARY_BITS if 1 << bits >= len(data)), LZMA_DICTIONARY_BITS[-1])
    return bytes([bits]) + lzma.compress(data, format=lzma.FORMAT_RAW, filters=_filters(bits))


def _unlzma(data: bytes, count: int, alphabet: int) -> np.ndarray:
    if not data or data[0] not in LZMA_DICTIONARY_BITS:
        raise ValueError("lzma: missing or bad dictionary size byte")
    try:
        return _from_bytes(lzma.decompress(data[1:], format=lzma.FORMAT_RAW, filters=_filters(data[0])), count, alphabet)
    except lzma.LZMAError as error:
        raise ValueError(f"lzma: {error}") from None


def _huffman_decode(data: bytes, count: int, alphabet: int) -> np.ndarray:
    return huffman.decode(data, count)


for _codec in (Codec("packed", _pack, _unpack), Codec("huffman", huffman.encode, _huffman_decode),
               Codec("deflate", _deflate, _inflate), Codec("lzma", _lzma, _unlzma)):
    _CODECS.add(_codec.name, _codec)


def smallest(symbols: np.ndarray, alphabet: int, allowed: tuple[str, ...] | None = None) -> tuple[str, bytes]:
    """(codec name, bytes) of the codec that writes `symbols` in the fewest bytes (the first listed
    on a tie), among `allowed` (default: every codec)."""
    best: tuple[str, bytes] | None = None
    for name in allowed or list_codecs():
        data = get_codec(name).encode(symbols, alphabet)
        if best is None or len(data) < len(best[1]):
            best = (name, data)
    return best
