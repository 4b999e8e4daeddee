"""Entropy coding of quantised models: every codec round-trips, Huffman lands within a bit of the
entropy, relative indices give back the positions, and an encoded model decodes to the same
integers and the same outputs (and a damaged file is an error, never a wrong model)."""

import math

import numpy as np
import pytest
import torch

from prune_ray.quantize import BitWidths, get_quantizer, list_quantizers
from prune_ray.quantize import huffman
from prune_ray.quantize.codecs import get_codec, list_codecs, smallest
from prune_ray.quantize.encoding import (EncodingError, decode_model, encode_model, gap_symbols, positions_of)
from test_quantize import pruned_model


def streams():
    rng = np.random.default_rng(0)
    skewed = np.minimum(rng.geometric(0.3, 5000) - 1, 31)
    return {
        "empty": (np.zeros(0, np.int64), 4),
        "one symbol": (np.full(100, 3, np.int64), 8),
        "skewed": (skewed, 32),
        "uniform bytes": (rng.integers(0, 256, 3000), 256),
        "wide alphabet": (rng.integers(0, 4096, 2000), 4096),
    }


@pytest.mark.parametrize("codec", list_codecs())
@pytest.mark.parametrize("stream", list(streams()))
def test_every_codec_round_trips(codec, stream):
    symbols, alphabet = streams()[stream]
    data = get_codec(codec).encode(symbols, alphabet)
    assert np.array_equal(get_codec(codec).decode(data, len(symbols), alphabet), symbols)


def test_huffman_is_within_one_bit_of_the_entropy_per_symbol():
    symbols, alphabet = streams()["skewed"]
    counts = np.bincount(symbols, minlength=alphabet)
    probability = counts[counts > 0] / len(symbols)
    entropy_bits = -(probability * np.log2(probability)).sum() * len(symbols)
    body_bits = 8 * (len(huffman.encode(symbols, alphabet)) - 2 - math.ceil(alphabet / 2))
    assert entropy_bits <= body_bits < entropy_bits + len(symbols) + 8
    assert len(huffman.encode(symbols, alphabet)) < len(get_codec("packed").encode(symbols, alphabet))


def test_huffman_lengths_are_limited_and_still_decode():
    counts = np.array([2**k for k in range(30)], dtype=np.int64)  # a Fibonacci-like tree would be 29 deep
    lengths = huffman.code_lengths(counts)
    assert lengths.max() <= huffman.MAX_LENGTH and (lengths > 0).all()
    assert sum(2.0 ** -lengths) <= 1  # Kraft: a prefix code exists
    symbols = np.repeat(np.arange(30), np.minimum(counts, 500))
    assert np.array_equal(huffman.decode(huffman.encode(symbols, 30), len(symbols)), symbols)


def test_a_truncated_huffman_stream_is_an_error():
    symbols, alphabet = streams()["skewed"]
    data = huffman.encode(symbols, alphabet)
    with pytest.raises(ValueError, match="huffman"):
        huffman.decode(data[: len(data) // 2], len(symbols))


def test_smallest_picks_the_fewest_bytes():
    symbols, alphabet = streams()["skewed"]
    name, data = smallest(symbols, alphabet)
    assert len(data) == min(len(get_codec(codec).encode(symbols, alphabet)) for codec in list_codecs())
    assert data == get_codec(name).encode(symbols, alphabet)


@pytest.mark.parametrize("gap_bits", [1, 2, 5, 8])
def test_relative_indices_give_back_the_positions(gap_bits):
    rng = np.random.default_rng(gap_bits)
    present = rng.random(5000) < 0.05
    present[:3] = True  # gaps of 0 at the start
    present[4000:4900] = False  # one long run: escapes
    symbols = gap_symbols(present, gap_bits)
    assert (symbols < 2**gap_bits).all()
    assert np.array_equal(positions_of(symbols, gap_bits, len(present)), np.flatnonzero(present))
    with pytest.raises(EncodingError, match="relative indices"):
        positions_of(symbols, gap_bits, int(np.flatnonzero(present)[-1]))


@pytest.mark.parametrize("name", list_quantizers())
def test_an_encoded_model_decodes_to_the_same_codes_and_outputs(name):
    model = pruned_model(keep=0.1)
    codes = get_quantizer(name).quantize(model, BitWidths(8, 5)).freeze()
    encoded = encode_model(model.state_dict(), codes)
    decoded = decode_model(encoded.data)
    assert sum(encoded.parts.values()) == len(encoded.data) == sum(encoded.codecs.values()) + encoded.parts["header"]
    assert set(decoded.quantized) == set(codes)
    for key, tensor in codes.items():
        assert torch.equal(decoded.quantized[key].codes, tensor.codes)  # the integers, bit-exact
        assert torch.equal(decoded.quantized[key].table, tensor.table)
    state = model.state_dict()
    assert all(torch.equal(decoded.state[key], value) and decoded.state[key].dtype == value.dtype for key, value in state.items())
    rebuilt = pruned_model()
    rebuilt.load_state_dict(decoded.state)
    x = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model.eval()(x))
    if codes:  # quantised and coded: far below the dense float32 file
        assert len(encoded.data) < 0.1 * sum(value.numel() * value.element_size() for value in state.values())


def test_each_forced_codec_decodes_and_the_default_is_no_larger():
    model = pruned_model(keep=0.1)
    codes = get_quantizer("kmeans").quantize(model, BitWidths(8, 5)).freeze()
    sizes = {}
    for codec in list_codecs():
        encoded = encode_model(model.state_dict(), codes, codecs=(codec,))
        assert set(encoded.codecs) == {codec}
        assert all(torch.equal(decode_model(encoded.data).quantized[k].codes, v.codes) for k, v in codes.items())
        sizes[codec] = len(encoded.data)
    assert len(encode_model(model.state_dict(), codes).data) <= min(sizes.values())
    assert sizes["huffman"] < sizes["packed"]  # entropy coding pays on real codes


@pytest.mark.parametrize("damage", ["magic", "truncated", "flipped header", "extra bytes"])
def test_a_damaged_file_is_an_encoding_error(damage):
    model = pruned_model(keep=0.1)
    codes = get_quantizer("kmeans").quantize(model, BitWidths(8, 5)).freeze()
    data = bytearray(encode_model(model.state_dict(), codes).data)
    if damage == "magic":
        data[:4] = b"PK\x03\x04"
    elif damage == "truncated":
        data = data[:-100]
    elif damage == "flipped header":
        data[10] ^= 0xFF
    else:
        data += b"\x00"
    with pytest.raises(EncodingError):
        decode_model(bytes(data))
