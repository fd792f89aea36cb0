"""Update codecs (spikefed.comm.codecs): round trips, bounds, error feedback, exact bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikefed.comm import (
    NoneCodec,
    QSGDCodec,
    SignCodec,
    TopKCodec,
    apply_downlink,
    compress_downlink,
    index_dtype,
    make_codec,
)
from spikefed.comm.codecs import pack_codes, unpack_codes
from spikefed.config import CodecConfig, ConfigError, load_config


def _update(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(20, 50, generator=g), "b": torch.randn(7, generator=g),
            "bn.num_batches_tracked": torch.tensor(12, dtype=torch.int64)}


def test_none_is_lossless_and_counts_every_byte() -> None:
    update = _update()
    update["h"] = torch.randn(5, dtype=torch.float64)
    codec = NoneCodec()
    encoded, residual = codec.encode(update)
    decoded = codec.decode(encoded)
    assert residual is None
    for k in update:
        assert decoded[k].dtype == update[k].dtype and torch.equal(decoded[k], update[k])
    assert encoded.nbytes == 1000 * 4 + 7 * 4 + 8 + 5 * 8


def test_topk_keeps_exactly_the_k_largest() -> None:
    x = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    codec = TopKCodec(0.01)
    decoded = codec.decode(codec.encode({"x": x})[0])["x"]
    kept = decoded != 0
    assert int(kept.sum()) == 10
    assert torch.equal(decoded[kept], x[kept])
    assert set(torch.nonzero(kept).ravel().tolist()) == set(x.abs().topk(10).indices.tolist())


def test_topk_bytes_hand_computed() -> None:
    # 1,000 fp32 entries, 1 %: 10 values x 4 bytes + 10 uint16 indices x 2 bytes
    encoded, _ = TopKCodec(0.01).encode({"x": torch.randn(1000)})
    assert encoded.nbytes == 10 * 4 + 10 * 2
    # 256 entries: indices 0..255 fit uint8; fp16 values 2 bytes; 10 % -> ceil(25.6) = 26
    encoded, _ = TopKCodec(0.1).encode({"x": torch.randn(256).half()})
    assert encoded.nbytes == 26 * 2 + 26 * 1
    # integer tensors pass through and are counted
    encoded, _ = TopKCodec(0.5).encode({"n": torch.tensor(3, dtype=torch.int64)})
    assert encoded.nbytes == 8


@pytest.mark.parametrize(("numel", "width"), [(1, 1), (256, 1), (257, 2), (65536, 2),
                                              (65537, 4), (2**32, 4), (2**32 + 1, 8)])
def test_index_width_is_the_smallest_that_fits(numel: int, width: int) -> None:
    assert index_dtype(numel).itemsize == width


@pytest.mark.parametrize("bits", [1, 3, 8, 11, 16])
def test_bit_packing_round_trips(bits: int) -> None:
    codes = np.random.default_rng(bits).integers(0, 1 << bits, size=101)
    packed = pack_codes(codes, bits)
    assert packed.nbytes == math.ceil(bits * 101 / 8)
    assert np.array_equal(unpack_codes(packed, bits, 101), codes)


def test_qsgd_is_unbiased_and_within_one_step() -> None:
    x = torch.randn(200, generator=torch.Generator().manual_seed(2))
    codec = QSGDCodec(bits=2)
    step = 2 * float(x.abs().max()) / codec.levels
    total = torch.zeros_like(x)
    seeds = 2000
    for seed in range(seeds):
        d = codec.decode(codec.encode({"x": x}, generator=torch.Generator().manual_seed(seed))[0])
        assert float((d["x"] - x).abs().max()) <= step * (1 + 1e-6)
        total += d["x"]
    # the mean's standard error is at most step / 2 / sqrt(seeds); allow 5 of them
    assert float((total / seeds - x).abs().max()) < 5 * step / 2 / math.sqrt(seeds)


def test_qsgd_bytes_and_seed_determinism() -> None:
    x = {"x": torch.randn(1000)}
    codec = QSGDCodec(bits=4)
    a, _ = codec.encode(x, generator=torch.Generator().manual_seed(5))
    b, _ = codec.encode(x, generator=torch.Generator().manual_seed(5))
    assert a.nbytes == 1000 * 4 // 8 + 4
    assert torch.equal(codec.decode(a)["x"], codec.decode(b)["x"])
    with pytest.raises(ValueError, match="seeded torch.Generator"):
        codec.encode(x)


def test_sign_decode_bound_and_bytes() -> None:
    x = torch.randn(1001, generator=torch.Generator().manual_seed(3))
    codec = SignCodec()
    encoded, _ = codec.encode({"x": x})
    d = codec.decode(encoded)["x"]
    assert encoded.nbytes == math.ceil(1001 / 8) + 4
    assert torch.equal(torch.sign(d), torch.where(x >= 0, 1.0, -1.0))
    assert torch.allclose(d.abs(), x.abs().mean().expand_as(d))
    n = x.numel()
    assert float(((x - d) ** 2).sum()) <= (1 - 1 / n) * float((x ** 2).sum())


@pytest.mark.parametrize("codec", [TopKCodec(0.05, error_feedback=True),
                                   QSGDCodec(2, error_feedback=True),
                                   SignCodec(error_feedback=True)], ids=lambda c: c.name)
def test_error_feedback_conserves_the_total(codec) -> None:
    residual = None
    raw_sum = decoded_sum = None
    gen = torch.Generator().manual_seed(0)
    for rnd in range(6):
        update = {k: v for k, v in _update(rnd).items() if v.is_floating_point()}
        encoded, residual = codec.encode(update, residual, gen)
        decoded = codec.decode(encoded)
        raw_sum = update if raw_sum is None else {k: raw_sum[k] + update[k] for k in update}
        decoded_sum = decoded if decoded_sum is None else {k: decoded_sum[k] + decoded[k]
                                                           for k in decoded}
    for k in raw_sum:
        assert torch.allclose(decoded_sum[k] + residual[k], raw_sum[k], atol=1e-5)
        assert not torch.allclose(decoded_sum[k], raw_sum[k], atol=1e-3)   # lossy without it


def test_topk_without_feedback_returns_no_residual() -> None:
    codec = TopKCodec(0.1)
    assert codec.encode(_update())[1] is None
    with pytest.raises(ValueError, match="without error feedback"):
        codec.encode(_update(), {"w": torch.zeros(20, 50)})


def test_downlink_round_trip() -> None:
    old = _update(0)
    new = {k: v + 0.1 if v.is_floating_point() else v + 1 for k, v in old.items()}
    codec = NoneCodec()
    encoded, _ = compress_downlink(codec, new, old)
    rebuilt = apply_downlink(codec, old, encoded)
    for k in new:
        assert torch.allclose(rebuilt[k], new[k]) and rebuilt[k].dtype == new[k].dtype
    lossy = TopKCodec(0.5, error_feedback=True)
    encoded, residual = compress_downlink(lossy, new, old)
    rebuilt = apply_downlink(lossy, old, encoded)
    assert torch.allclose(rebuilt["w"] + residual["w"], new["w"], atol=1e-6)


def test_config_builds_codecs_and_rejects_bad_values() -> None:
    assert load_config().train.codec == CodecConfig()
    assert isinstance(make_codec(CodecConfig()), NoneCodec)
    topk = make_codec(CodecConfig(name="topk", fraction=0.1, error_feedback=True))
    assert isinstance(topk, TopKCodec) and topk.fraction == 0.1 and topk.error_feedback
    assert make_codec(CodecConfig(name="sign")).error_feedback          # sign: EF by default
    assert make_codec(CodecConfig(name="qsgd", bits=4)).bits == 4
    for override, key in [("train.codec.fraction=0", "train.codec.fraction"),
                          ("train.codec.fraction=1.5", "train.codec.fraction"),
                          ("train.codec.bits=0", "train.codec.bits"),
                          ("train.codec.bits=17", "train.codec.bits"),
                          ("train.codec.name=gzip", "train.codec.name")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(overrides=[override])
    with pytest.raises(ConfigError, match="lossless"):
        load_config(overrides=["train.codec.error_feedback=true"])
