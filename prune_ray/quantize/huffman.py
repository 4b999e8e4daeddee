"""Canonical Huffman coding of integer symbols, vectorised with numpy (Deep Compression's third stage).

Layout of one coded stream: u16 `top` (symbols 0..top-1 have a code length), the code lengths as
nibbles (4 bits each, 0 = the symbol does not occur, at most MAX_LENGTH), then the codes, most
significant bit first, padded with zeros to a byte. The symbol count is not stored: the caller
keeps it. Code lengths are limited to MAX_LENGTH by flattening the counts until the tree fits, so
decoding is one table lookup of MAX_LENGTH bits per symbol.
"""

from __future__ import annotations

import heapq
import struct

import numpy as np

MAX_LENGTH = 15  # longest code in bits (lengths fit in a nibble; the decoding table has 2**15 entries)


def code_lengths(counts: np.ndarray, limit: int = MAX_LENGTH) -> np.ndarray:
    """Huffman code length of each symbol (0 for a symbol that does not occur), at most `limit`."""
    counts = np.asarray(counts, dtype=np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), dtype=np.int64)
    if len(used) == 1:
        lengths[used] = 1
        return lengths
    weights = counts[used].copy()
    while len(used):
        depth = _tree_depths(weights)
        if depth.max() <= limit:
            lengths[used] = depth
            return lengths
        weights = (weights + 1) // 2  # flatten: rarer symbols gain, the tree gets shallower
    return lengths


def _tree_depths(weights: np.ndarray) -> np.ndarray:
    heap = [(int(weight), index, (index,)) for index, weight in enumerate(weights)]
    heapq.heapify(heap)
    depth = np.zeros(len(weights), dtype=np.int64)
    order = len(weights)
    while len(heap) > 1:
        w1, _, left = heapq.heappop(heap)
        w2, _, right = heapq.heappop(heap)
        members = left + right
        depth[list(members)] += 1
        heapq.heappush(heap, (w1 + w2, order, members))
        order += 1
    return depth


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code of each symbol: by (length, symbol), each code the previous plus one, shifted."""
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, previous = 0, 0
    for symbol in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[symbol]) - previous
        codes[symbol] = code
        code += 1
        previous = int(lengths[symbol])
    return codes


def _header(lengths: np.ndarray) -> bytes:
    used = np.flatnonzero(lengths)
    top = int(used.max()) + 1 if len(used) else 0
    nibbles = np.zeros(top + top % 2, dtype=np.uint8)
    nibbles[:top] = lengths[:top]
    return struct.pack("<H", top) + (nibbles[0::2] << 4 | nibbles[1::2]).astype(np.uint8).tobytes()


def encode(symbols: np.ndarray, alphabet: int) -> bytes:
    symbols = np.asarray(symbols, dtype=np.int64)
    if alphabet > 65535:
        raise ValueError(f"huffman: alphabet of {alphabet} symbols; at most 65535")
    lengths = code_lengths(np.bincount(symbols, minlength=alphabet))
    codes = canonical_codes(lengths)
    sizes, values = lengths[symbols], codes[symbols]
    total = int(sizes.sum())
    owner = np.repeat(np.arange(len(symbols)), sizes)
    offset = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    bits = (values[owner] >> (sizes[owner] - 1 - offset)) & 1
    return _header(lengths) + np.packbits(bits.astype(np.uint8)).tobytes()


def decode(data: bytes, count: int) -> np.ndarray:
    """`count` symbols back from `encode`'s bytes; ValueError when the stream is too short or corrupt."""
    if len(data) < 2:
        raise ValueError("huffman: stream shorter than its header")
    (top,) = struct.unpack_from("<H", data)
    table_bytes = (top + 1) // 2
    packed = np.frombuffer(data, dtype=np.uint8, offset=2, count=table_bytes) if table_bytes else np.zeros(0, np.uint8)
    lengths = np.stack([packed >> 4, packed & 15], axis=1).reshape(-1)[:top].astype(np.int64)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if not lengths.any():
        raise ValueError("huffman: no code lengths for a non-empty stream")
    codes = canonical_codes(lengths)
    symbol_of = np.full(1 << MAX_LENGTH, -1, dtype=np.int64)
    length_of = np.zeros(1 << MAX_LENGTH, dtype=np.int64)
    for symbol in np.flatnonzero(lengths):
        size = int(lengths[symbol])
        first = int(codes[symbol]) << (MAX_LENGTH - size)
        symbol_of[first : first + (1 << (MAX_LENGTH - size))] = symbol
        length_of[first : first + (1 << (MAX_LENGTH - size))] = size
    body = np.frombuffer(data, dtype=np.uint8, offset=2 + table_bytes)
    padded = np.concatenate([body, np.zeros(3, np.uint8)]).astype(np.int64)
    position = np.arange(8 * len(body))
    window = (padded[position >> 3] << 16 | padded[(position >> 3) + 1] << 8 | padded[(position >> 3) + 2])
    window = (window >> (9 - (position & 7))) & ((1 << MAX_LENGTH) - 1)
    steps, found = length_of[window].tolist(), symbol_of[window].tolist()
    out, at, end = [0] * count, 0, len(steps)
    for index in range(count):  # each code's length says where the next one starts
        if at >= end or steps[at] == 0:
            raise ValueError(f"huffman: stream ends or breaks after {index} of {count} symbols")
        out[index] = found[at]
        at += steps[at]
    if at > end:
        raise ValueError(f"huffman: the last code runs past the stream's {end} bits")
    return np.asarray(out, dtype=np.int64)
