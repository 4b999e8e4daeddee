"""A quantised model's state dict encoded for real, as Deep Compression stores it: per quantised
weight, the sparse pattern as relative indices and the values as code indices, each stream
entropy coded; every other tensor (biases, BatchNorm, codebooks, scales) as raw little-endian bytes,
compressed together. Nothing is pickled; decoding gives back the integers bit-exactly.

File layout: b"PRQ1", u32 header length, the header (compact JSON, raw deflate), then the streams in
the header's order: the float bytes, then per quantised tensor its index stream and its code stream.

Relative indices: the zeros skipped before each kept weight (row-major), written as symbols of
`gap_bits` bits where the largest symbol, 2**gap_bits - 1, is an escape meaning "that many more
zeros, no weight yet" (Deep Compression's filler zero, without spending a code on it). Each tensor
gets the gap width whose stream Huffman codes smallest.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch

from . import huffman
from .codecs import get_codec, smallest
from .tensor import FORMATS, QuantizedTensor

MAGIC = b"PRQ1"
GAP_BITS = range(1, 13)  # relative-index widths tried per tensor
DTYPES = {str(dtype).removeprefix("torch."): dtype for dtype in
          (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
           torch.int8, torch.uint8, torch.bool)}


class EncodingError(ValueError):
    """Bytes that are not an encoded model, or do not decode to what their header says."""


@dataclass
class EncodedModel:
    data: bytes  # the file's bytes
    parts: dict[str, int] = field(default_factory=dict)  # bytes by part: header, floats, indices, codes
    codecs: dict[str, int] = field(default_factory=dict)  # bytes written by each codec


# ---------------------------------------------------------------- relative indices


def gap_symbols(present: np.ndarray, gap_bits: int) -> np.ndarray:
    """Symbols of the zeros skipped before each True of the flat bool array `present`."""
    positions = np.flatnonzero(present)
    gaps = np.diff(positions, prepend=-1) - 1
    escape = (1 << gap_bits) - 1
    escapes = gaps // escape
    symbols = np.full(int(escapes.sum()) + len(gaps), escape, dtype=np.int64)
    symbols[np.cumsum(escapes + 1) - 1] = gaps % escape
    return symbols


def positions_of(symbols: np.ndarray, gap_bits: int, numel: int) -> np.ndarray:
    """The flat positions `gap_symbols` wrote; EncodingError when they run past the tensor."""
    escape = (1 << gap_bits) - 1
    ends = symbols != escape
    entry = np.concatenate([[0], np.cumsum(ends)[:-1]]) if len(symbols) else np.zeros(0, np.int64)
    gaps = np.bincount(entry, weights=np.where(ends, symbols, escape), minlength=int(ends.sum()))[: int(ends.sum())]
    positions = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if len(positions) and positions[-1] >= numel:
        raise EncodingError(f"relative indices reach position {positions[-1]} of a tensor of {numel}")
    return positions


def huffman_bits(symbols: np.ndarray, alphabet: int) -> int:
    """Bits of `symbols` Huffman coded, its code-length table included."""
    counts = np.bincount(symbols, minlength=alphabet)
    return int((counts * huffman.code_lengths(counts)).sum()) + 4 * alphabet + 16


def best_gap_bits(present: np.ndarray) -> int:
    """The relative-index width whose symbols Huffman codes smallest (Deep Compression's coder; the
    stream is then written with whichever codec is smallest for it)."""
    return min(GAP_BITS, key=lambda bits: huffman_bits(gap_symbols(present, bits), 1 << bits))


# ---------------------------------------------------------------- code symbols


def code_symbols(tensor: QuantizedTensor, kept: np.ndarray) -> tuple[np.ndarray, int]:
    """(symbols, alphabet) of the kept weights' codes: codebook 1..K -> 0..K-1; scaled
    -L..-1, 1..L -> 0..2L-1."""
    if tensor.format == "codebook":
        return kept - 1, tensor.levels
    return np.where(kept < 0, kept + tensor.levels, kept + tensor.levels - 1), 2 * tensor.levels


def codes_of(format: str, symbols: np.ndarray, levels: int) -> np.ndarray:
    if format == "codebook":
        return symbols + 1
    return np.where(symbols < levels, symbols - levels, symbols - levels + 1)


def _raw(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


# ---------------------------------------------------------------- encode


def encode_model(state: Mapping[str, torch.Tensor], quantized: Mapping[str, QuantizedTensor],
                 codecs: tuple[str, ...] | None = None) -> EncodedModel:
    """Encode `state` (a state dict), storing the entries named in `quantized` by their codes; each
    stream with the smallest of `codecs` (default: every codec)."""
    unknown = sorted(set(quantized) - set(state))
    if unknown:
        raise EncodingError(f"quantised tensor {unknown[0]!r} is not in the state dict")
    encoded = EncodedModel(b"")
    entries, floats, streams = [], [], []
    symbols_of: list[tuple[dict, tuple[np.ndarray, int], tuple[np.ndarray, int]]] = []  # entry, gaps, codes

    def stream(symbols: np.ndarray, alphabet: int, part: str) -> list:
        codec, data = smallest(symbols, alphabet, codecs)
        streams.append(data)
        encoded.parts[part] = encoded.parts.get(part, 0) + len(data)
        encoded.codecs[codec] = encoded.codecs.get(codec, 0) + len(data)
        return [codec, len(data), len(symbols)]

    for name, value in state.items():
        if name not in quantized:
            entries.append({"n": name, "d": str(value.dtype).removeprefix("torch."), "s": list(value.shape)})
            floats.append(_raw(value))
            continue
        tensor = quantized[name]
        flat = tensor.codes.reshape(-1).numpy()
        present = flat != 0
        gap_bits = best_gap_bits(present)
        entries.append({"n": name, "s": list(tensor.codes.shape), "f": tensor.format, "b": tensor.bits,
                        "l": tensor.levels, "g": gap_bits, "t": tensor.table.numel()})
        floats.append(_raw(tensor.table.float()))
        symbols_of.append((entries[-1], (gap_symbols(present, gap_bits), 1 << gap_bits), code_symbols(tensor, flat[present])))
    blob = b"".join(floats)
    header = {"floats": stream(np.frombuffer(blob, dtype=np.uint8), 256, "floats"), "tensors": entries}
    for entry, gaps, codes in symbols_of:  # after the floats: the streams are in the file in this order
        entry["gaps"], entry["codes"] = stream(*gaps, "indices"), stream(*codes, "codes")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    packed = compressor.compress(json.dumps(header, separators=(",", ":")).encode()) + compressor.flush()
    encoded.parts["header"] = len(MAGIC) + 4 + len(packed)
    encoded.data = MAGIC + struct.pack("<I", len(packed)) + packed + b"".join(streams)
    return encoded


# ---------------------------------------------------------------- decode


@dataclass(frozen=True)
class DecodedModel:
    state: dict[str, torch.Tensor]  # the full state dict (quantised weights dequantised)
    quantized: dict[str, QuantizedTensor]  # the codes, exactly as encoded


class _Reader:
    def __init__(self, data: bytes, at: int):
        self.data, self.at = data, at

    def take(self, descriptor: list, alphabet: int) -> np.ndarray:
        codec, size, count = descriptor
        if self.at + size > len(self.data):
            raise EncodingError(f"encoded model ends at byte {len(self.data)}, a stream needs {self.at + size}")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        try:
            return get_codec(codec).decode(chunk, count, alphabet)
        except ValueError as error:
            raise EncodingError(f"a {codec} stream does not decode: {error}") from None


def _tensor(raw: bytes, dtype: str, shape: list[int]) -> torch.Tensor:
    if dtype not in DTYPES:
        raise EncodingError(f"tensor dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(DTYPES[dtype]).reshape(shape).clone()


def decode_model(data: bytes) -> DecodedModel:
    if data[:4] != MAGIC or len(data) < 8:
        raise EncodingError(f"not an encoded model: starts with {data[:4]!r}, not {MAGIC!r}")
    (length,) = struct.unpack_from("<I", data, 4)
    try:
        header = json.loads(zlib.decompress(data[8 : 8 + length], -15))
        reader = _Reader(data, 8 + length)
        blob = reader.take(header["floats"], 256).astype(np.uint8).tobytes()
        state, quantized, at = {}, {}, 0
        for entry in header["tensors"]:
            shape = [int(size) for size in entry["s"]]
            numel = int(np.prod(shape, dtype=np.int64))
            if "f" not in entry:
                dtype = entry["d"]
                size = numel * torch.empty(0, dtype=DTYPES[dtype]).element_size() if dtype in DTYPES else 0
                state[entry["n"]] = _tensor(blob[at : at + size], dtype, shape)
                at += size
                continue
            if entry["f"] not in FORMATS:
                raise EncodingError(f"tensor {entry['n']!r} has format {entry['f']!r}; allowed: {', '.join(FORMATS)}")
            table = _tensor(blob[at : at + 4 * int(entry["t"])], "float32", [int(entry["t"])])
            at += 4 * int(entry["t"])
            positions = positions_of(reader.take(entry["gaps"], 1 << int(entry["g"])), int(entry["g"]), numel)
            alphabet = int(entry["l"]) * (1 if entry["f"] == "codebook" else 2)
            symbols = reader.take(entry["codes"], alphabet)
            if len(symbols) != len(positions):
                raise EncodingError(f"tensor {entry['n']!r}: {len(positions)} indices but {len(symbols)} codes")
            codes = np.zeros(numel, dtype=np.int64)
            codes[positions] = codes_of(entry["f"], symbols, int(entry["l"]))
            tensor = QuantizedTensor(entry["f"], int(entry["b"]), torch.from_numpy(codes).reshape(shape), table, int(entry["l"]))
            quantized[entry["n"]] = tensor
            state[entry["n"]] = tensor.dequantize()
    except (KeyError, TypeError, ValueError, RuntimeError, zlib.error) as error:
        if isinstance(error, EncodingError):
            raise
        raise EncodingError(f"encoded model is corrupt: {type(error).__name__}: {error}") from None
    if at != len(blob) or reader.at != len(data):
        raise EncodingError(f"encoded model has {len(blob) - at} float and {len(data) - reader.at} stream bytes left over")
    return DecodedModel(state, quantized)
