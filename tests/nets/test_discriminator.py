"""The discriminator against the official MaskGIT structure: parameter counts derived layer by layer, BlurPool
against scipy, the 4×4 final map, xavier/zero init."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from fsq_repro.nets.discriminator import BlurPool, Discriminator, tf_same_padding

# Official ``filters`` dict of maskgit/nets/discriminator.py with channel_multiplier = 1.
OFFICIAL_FILTERS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def dense(cin: int, cout: int) -> int:
    return cin * cout + cout


def official_parameter_count(resolution: int) -> tuple[int, list[tuple[str, int]]]:
    """The official ``Discriminator.__call__`` written out layer by layer (flax ``nn.Conv``/``nn.Dense`` have a bias
    unless ``use_bias=False``)."""
    f = OFFICIAL_FILTERS
    layers = [("stem conv3x3 3->f[res]", conv(3, 3, f[resolution]))]
    channels = f[resolution]
    log_size = int(np.log2(resolution))
    for i in range(log_size, 2, -1):  # official: `for i in range(log_size, 2, -1): ResBlock(filters[2**(i-1)])`
        out = f[2 ** (i - 1)]
        layers += [
            (f"block{i} conv3x3 in->in", conv(3, channels, channels)),
            (f"block{i} residual conv1x1 in->out no bias", conv(1, channels, out, bias=False)),
            (f"block{i} conv3x3 in->out", conv(3, channels, out)),
        ]
        channels = out
    layers += [
        ("conv3x3 f[4]->f[4]", conv(3, channels, f[4])),
        ("dense 4*4*f[4] -> f[4]", dense(4 * 4 * f[4], f[4])),
        ("dense f[4] -> 1", dense(f[4], 1)),
    ]
    return sum(n for _, n in layers), layers


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_official_count_by_hand_at_256px() -> None:
    # 256 px, written out: stem 3*9*64+64; blocks 64->128, 128->256, 256->512, 3 x 512->512; conv; dense; dense.
    def block(i: int, o: int) -> int:  # conv3x3 in->in + bias, conv1x1 in->out, conv3x3 in->out + bias
        return (9 * i * i + i) + i * o + (9 * i * o + o)

    by_hand = (
        (3 * 9 * 64 + 64)
        + block(64, 128)
        + block(128, 256)
        + block(256, 512)
        + 3 * block(512, 512)
        + (9 * 512 * 512 + 512)
        + (16 * 512 * 512 + 512)
        + (512 + 1)
    )
    total, layers = official_parameter_count(256)
    assert total == by_hand == 23_998_017
    assert len([name for name, _ in layers if name.endswith("conv3x3 in->in")]) == 6


@pytest.mark.parametrize(("resolution", "expected", "blocks"), [(256, 23_998_017, 6), (128, 23_880_833, 5)])
def test_parameter_count_equals_the_official_structure(resolution: int, expected: int, blocks: int) -> None:
    total, _ = official_parameter_count(resolution)
    assert total == expected
    disc = Discriminator(resolution)
    assert count(disc) == expected
    assert len(disc.blocks) == blocks
    assert disc.stem.out_channels == OFFICIAL_FILTERS[resolution]
    assert [b.conv2.out_channels for b in disc.blocks] == [
        OFFICIAL_FILTERS[resolution >> (k + 1)] for k in range(blocks)
    ]


def test_filters_reproduce_the_official_map_and_shrink_with_max_channels() -> None:
    disc = Discriminator(32, max_channels=32)
    assert all(disc.filters(s) == 32 for s in (4, 8, 16, 32))
    official = Discriminator(4)
    assert {s: official.filters(s) for s in OFFICIAL_FILTERS} == OFFICIAL_FILTERS
    official.channel_multiplier = 2.0
    assert [official.filters(s) for s in (32, 64, 128, 256)] == [512, 512, 256, 128]  # 512 fixed up to 32 px


@pytest.mark.parametrize("resolution", [256, 128, 32])
def test_final_map_is_4x4(resolution: int) -> None:
    disc = Discriminator(resolution, max_channels=16 if resolution == 32 else 512)
    assert disc.fc1.in_features == 4 * 4 * disc.filters(4)
    if resolution == 256:
        return  # the 4x4 check by forward pass is the same code path; keep the test light on CPU
    seen = []
    disc.conv.register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape)))
    with torch.no_grad():
        logits = disc(torch.randn(1, 3, resolution, resolution))
    assert logits.shape == (1,)
    assert seen == [(1, disc.filters(4), 4, 4)]  # what the last block hands to the 4x4 conv


@pytest.mark.parametrize(("height", "width"), [(8, 8), (6, 10), (5, 7)])
def test_blurpool_equals_scipy_with_tf_same_padding(height: int, width: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, height, width))
    k1 = np.array([1.0, 3.0, 3.0, 1.0])
    kernel = np.outer(k1, k1) / 64.0
    expected = np.empty((2, 3, -(-height // 2), -(-width // 2)))
    for b in range(2):
        for c in range(3):
            # TF 'SAME', stride 2, window 4: pad total (ceil(n/2)-1)*2+4-n, the smaller half before
            pads = []
            for n in (height, width):
                total = (-(-n // 2) - 1) * 2 + 4 - n
                pads.append((total // 2, total - total // 2))
            padded = np.pad(x[b, c], pads)
            expected[b, c] = correlate2d(padded, kernel, mode="valid")[::2, ::2]
    out = BlurPool()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert tf_same_padding(8, 4, 2) == (1, 1) and tf_same_padding(5, 4, 2) == (1, 2)


def test_block_blurs_at_stride_2_then_convolves_at_stride_1() -> None:
    torch.manual_seed(0)
    disc = Discriminator(8, max_channels=4)
    block = disc.blocks[0]
    assert block.conv2.stride == (1, 1) and block.skip.stride == (1, 1) and block.skip.bias is None
    x = torch.randn(1, 4, 8, 8)
    lrelu = torch.nn.functional.leaky_relu
    blurred = BlurPool()(lrelu(block.conv1(x), 0.2))
    main = lrelu(torch.nn.functional.conv2d(blurred, block.conv2.weight, block.conv2.bias, padding=1), 0.2)
    residual = torch.nn.functional.conv2d(BlurPool()(x), block.skip.weight)
    torch.testing.assert_close(block(x), (main + residual) / 2**0.5)


def test_xavier_uniform_kernels_and_zero_biases() -> None:
    torch.manual_seed(0)
    disc = Discriminator(64)
    for m in disc.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            fan_in = m.weight[0].numel()
            fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
            bound = (6 / (fan_in + fan_out)) ** 0.5
            assert m.weight.abs().max().item() <= bound * (1 + 1e-6)
            if m.weight.numel() > 10_000:
                assert m.weight.abs().max().item() > 0.99 * bound
            assert m.bias is None or torch.count_nonzero(m.bias) == 0


def test_gradients_flow_and_bad_resolutions_raise() -> None:
    disc = Discriminator(32, max_channels=16)
    x = torch.randn(3, 3, 32, 32, requires_grad=True)
    disc(x).sum().backward()
    assert x.grad.abs().sum() > 0
    for bad in (36, 2, 48):
        with pytest.raises(ValueError, match="not a power of two"):
            Discriminator(bad)
