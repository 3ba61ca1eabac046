"""VQGAN encoder/decoder and the Tokenizer: shapes, downsampling, encode/decode consistency; the paper-size
encoder/decoder against a layer-by-layer count of the official MaskGIT structure; the official ResBlock shortcut."""

from __future__ import annotations

import pytest
import torch

from fsq_repro.nets.tokenizer import Tokenizer
from fsq_repro.nets.vqgan import Decoder, Encoder, ResBlock
from fsq_repro.quantizers import FSQ, VectorQuantizer

TINY = dict(base_channels=16, channel_multipliers=[1, 2, 2], num_res_blocks=1)


def test_maskgit_sizes_downsample_by_16() -> None:
    enc = Encoder(out_dim=4, base_channels=32, channel_multipliers=[1, 1, 2, 2, 4], num_res_blocks=2)
    dec = Decoder(in_dim=4, base_channels=32, channel_multipliers=[1, 1, 2, 2, 4], num_res_blocks=2)
    z = enc(torch.randn(1, 3, 64, 64))
    assert z.shape == (1, 4, 4, 4)
    assert dec(z).shape == (1, 3, 64, 64)
    assert all(m.bias is None for m in enc.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))


@pytest.mark.parametrize("quantizer", [FSQ([5, 5, 5]), VectorQuantizer(64, dim=8)])
def test_tokenizer_round_trip_for_both_bottlenecks(quantizer) -> None:
    torch.manual_seed(0)
    tok = Tokenizer(quantizer, resolution=32, **TINY).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    recon, q = tok(x)
    assert recon.shape == x.shape and q.indices.shape == (2, 8, 8) and tok.token_grid == (8, 8)
    tokens = tok.encode(x)
    assert torch.equal(tokens, q.indices)
    assert torch.allclose(tok.decode(tokens), recon, atol=1e-5)
    rebuilt = Tokenizer.from_config(tok.config())
    rebuilt.load_state_dict(tok.state_dict())
    assert torch.equal(rebuilt.eval().encode(x), tokens)


def test_resolution_must_divide_by_the_downsampling_factor() -> None:
    with pytest.raises(ValueError, match="not divisible by the tokenizer's downsampling factor 4"):
        Tokenizer(FSQ([5, 5, 5]), resolution=30, **TINY)


# ---- the paper-size encoder/decoder against the official structure (maskgit/nets/vqgan_tokenizer.py) ----


def conv(k: int, cin: int, cout: int, bias: bool) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def group_norm(channels: int) -> int:
    return 2 * channels  # flax nn.GroupNorm: scale and bias


def official_resblock(cin: int, filters: int) -> int:
    """Official ``ResBlock`` (use_conv_shortcut=False): GN, conv3x3 no bias, GN, conv3x3 no bias; when the width
    changes, a 1x1 conv without bias applied to the block's output ``x`` (``filters`` channels, not ``cin``)."""
    n = group_norm(cin) + conv(3, cin, filters, False) + group_norm(filters) + conv(3, filters, filters, False)
    if cin != filters:
        n += conv(1, filters, filters, False)
    return n


def official_encoder(d: int, filters: int = 128, mults=(1, 1, 2, 2, 4), blocks: int = 2) -> list[tuple[str, int]]:
    layers = [("conv3x3 3->f, no bias", conv(3, 3, filters, False))]
    c = filters
    for i, m in enumerate(mults):
        for j in range(blocks):
            layers.append((f"level {i} ResBlock {j}", official_resblock(c, filters * m)))
            c = filters * m
        # layers.dsample between levels: no parameters
    layers += [(f"ResBlock {j}", official_resblock(c, c)) for j in range(blocks)]
    layers += [("GroupNorm", group_norm(c)), ("conv1x1 -> d, bias", conv(1, c, d, True))]
    return layers


def official_decoder(d: int, filters: int = 128, mults=(1, 1, 2, 2, 4), blocks: int = 2) -> list[tuple[str, int]]:
    c = filters * mults[-1]
    layers = [("conv3x3 d->f*m[-1], bias", conv(3, d, c, True))]
    layers += [(f"ResBlock {j}", official_resblock(c, c)) for j in range(blocks)]
    for i in reversed(range(len(mults))):
        for j in range(blocks):
            layers.append((f"level {i} ResBlock {j}", official_resblock(c, filters * mults[i])))
            c = filters * mults[i]
        if i > 0:  # layers.upsample (no parameters), then conv3x3 with bias
            layers.append((f"level {i} conv3x3 after upsample, bias", conv(3, c, c, True)))
    layers += [("GroupNorm", group_norm(c)), ("conv3x3 -> RGB, bias", conv(3, c, 3, True))]
    return layers


def per_layer_counts(net: torch.nn.Module) -> list[int]:
    counts = [sum(p.numel() for p in m.parameters()) for m in net.net]
    return [n for n in counts if n]  # pooling, upsampling and swish have no parameters


def test_paper_config_parameter_counts_equal_the_official_structure() -> None:
    enc_layers, dec_layers = official_encoder(4), official_decoder(4)  # d = 4: FSQ [8, 5, 5, 5]
    assert sum(n for _, n in enc_layers) == 23_645_828
    assert sum(n for _, n in dec_layers) == 29_317_123
    with torch.device("meta"):  # shapes only: no memory, no init cost
        enc, dec = Encoder(out_dim=4), Decoder(in_dim=4)
        std_enc, std_dec = Encoder(4, shortcut_from="input"), Decoder(4, shortcut_from="input")
    assert per_layer_counts(enc) == [n for _, n in enc_layers]
    assert per_layer_counts(dec) == [n for _, n in dec_layers]
    assert sum(p.numel() for p in enc.parameters()) == 23_645_828
    assert sum(p.numel() for p in dec.parameters()) == 29_317_123
    # The decoder's entry is ONE 3x3 conv with bias, d -> 512, straight into a ResBlock.
    entry = dec.net[0]
    assert (entry.in_channels, entry.out_channels, entry.kernel_size) == (4, 512, (3, 3)) and entry.bias is not None
    assert isinstance(dec.net[1], ResBlock)
    # The standard (input) shortcut differs exactly by in*out instead of out*out per width-changing block:
    # encoder 128->256 and 256->512; decoder 512->256 and 256->128.
    assert sum(p.numel() for p in std_enc.parameters()) == 23_645_828 - (256 - 128) * 256 - (512 - 256) * 512
    assert sum(p.numel() for p in std_dec.parameters()) == 29_317_123 - (256 - 512) * 256 - (128 - 256) * 128


def test_layers_match_the_official_flags() -> None:
    enc = Encoder(out_dim=4, base_channels=32, channel_multipliers=[1, 2], num_res_blocks=1)
    dec = Decoder(in_dim=4, base_channels=32, channel_multipliers=[1, 2], num_res_blocks=1)
    norms = [m for m in [*enc.modules(), *dec.modules()] if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 32 and m.eps == 1e-6 for m in norms)
    assert isinstance(enc.net[2], torch.nn.AvgPool2d) and isinstance(dec.net[3], torch.nn.Upsample)
    assert dec.net[3].mode == "nearest" and dec.net[4].bias is not None  # nearest 2x, then conv3x3 with bias
    assert enc.net[-1].kernel_size == (1, 1) and enc.net[-1].bias is not None
    assert isinstance(dec.net[-2], torch.nn.SiLU) and dec.net[-1].kernel_size == (3, 3) and dec.net[-1].bias is not None
    for block in (m for m in [*enc.modules(), *dec.modules()] if isinstance(m, ResBlock)):
        assert block.conv1.bias is None and block.conv2.bias is None
        assert isinstance(block.shortcut, torch.nn.Identity) or block.shortcut.bias is None


@pytest.mark.parametrize("shortcut_from", ["output", "input"])
def test_resblock_shortcut_by_hand(shortcut_from: str) -> None:
    torch.manual_seed(0)
    block = ResBlock(4, 8, groups=2, shortcut_from=shortcut_from)
    for norm in (block.norm1, block.norm2):
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 4, 5, 5)

    def gn_swish(t: torch.Tensor, norm: torch.nn.GroupNorm) -> torch.Tensor:
        g = t.reshape(t.shape[0], 2, -1)
        g = (g - g.mean(-1, keepdim=True)) / (g.var(-1, unbiased=False, keepdim=True) + 1e-6).sqrt()
        g = g.reshape(t.shape) * norm.weight[:, None, None] + norm.bias[:, None, None]
        return g * torch.sigmoid(g)

    h = torch.nn.functional.conv2d(gn_swish(x, block.norm1), block.conv1.weight, padding=1)
    h = torch.nn.functional.conv2d(gn_swish(h, block.norm2), block.conv2.weight, padding=1)
    w = block.shortcut.weight[:, :, 0, 0]
    if shortcut_from == "output":  # official: h + W h, W is 8x8; x only reaches the output through h
        assert w.shape == (8, 8)
        expected = h + torch.einsum("oc,bchw->bohw", w, h)
    else:
        assert w.shape == (8, 4)
        expected = h + torch.einsum("oc,bchw->bohw", w, x)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    same = ResBlock(8, 8, groups=2, shortcut_from=shortcut_from)
    y = torch.randn(1, 8, 3, 3)
    assert isinstance(same.shortcut, torch.nn.Identity)
    main = same.conv2(torch.nn.functional.silu(same.norm2(same.conv1(torch.nn.functional.silu(same.norm1(y))))))
    torch.testing.assert_close(same(y), y + main)  # same width: the identity shortcut in both modes
    with pytest.raises(ValueError, match="shortcut_from"):
        ResBlock(4, 8, shortcut_from="both")


def test_flax_default_init() -> None:
    torch.manual_seed(0)
    dec = Decoder(in_dim=4, base_channels=64, channel_multipliers=[1, 1], num_res_blocks=1)
    conv3 = dec.net[1].conv1  # 64 -> 64, 3x3: fan_in 576, 36 864 weights
    std = (1 / 576) ** 0.5
    assert conv3.weight.std().item() == pytest.approx(std, rel=0.03)  # LeCun: variance 1/fan_in
    bound = 2 * std / 0.87962566103423978  # truncated at 2 sigma of the underlying normal
    assert bound * 0.97 < conv3.weight.abs().max().item() <= bound
    biases = [m.bias for m in dec.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None]
    assert len(biases) == 3 and all(torch.count_nonzero(b) == 0 for b in biases[1:])
    entry_bound = 1 / (4 * 9) ** 0.5  # the entry bias is PyTorch's U(±1/sqrt(fan_in)): see the next test
    assert 0 < biases[0].abs().max().item() <= entry_bound


def test_an_all_zero_latent_gives_finite_gradients() -> None:
    """FSQ's zero code (every z ≈ 0 maps to it) for a whole image: with an all-zero entry bias every decoder
    activation would be 0, each GroupNorm would scale the gradient by 1/sqrt(eps) = 1000, and the paper-size decoder
    overflowed to NaN (levels ablation [2]*10 at 32 px)."""
    torch.manual_seed(0)
    dec = Decoder(in_dim=10)  # paper config: 5 levels, 2 res blocks each
    codes = torch.zeros(2, 10, 2, 2)
    codes[0, :, 0, 0] = -1.0  # one image with one non-zero code, one all-zero image
    codes.requires_grad_(True)
    (dec(codes) - 0.5).pow(2).mean().backward()  # an L2 loss against a non-zero target
    grads = [p.grad for p in dec.parameters()] + [codes.grad]
    assert all(torch.isfinite(g).all() for g in grads)
    assert codes.grad.abs().max() < 1e3


def test_channels_last_computes_what_contiguous_computes() -> None:
    """``scripts/bench_channels_last.py`` (run by ``make gpu-check``) times the VQGAN in channels-last memory format;
    that format must change only the layout, not the numbers: encoder and decoder outputs and their weight gradients
    agree with the default NCHW format (float32; compared before the quantizer, whose rounding would turn a last-bit
    difference into a different code)."""
    torch.manual_seed(0)
    plain = Tokenizer(FSQ([5, 5, 5]), resolution=16, base_channels=16, channel_multipliers=[1, 2], groups=8)
    nhwc = Tokenizer(FSQ([5, 5, 5]), resolution=16, base_channels=16, channel_multipliers=[1, 2], groups=8)
    nhwc.load_state_dict(plain.state_dict())
    nhwc = nhwc.to(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    z = torch.rand(4, 3, 8, 8) * 2 - 1
    outs = []
    for net, fmt in ((plain, torch.contiguous_format), (nhwc, torch.channels_last)):
        latent = net.encoder(x.contiguous(memory_format=fmt))
        image = net.decoder(z.contiguous(memory_format=fmt))
        (latent.square().mean() + image.square().mean()).backward()
        outs.append((latent, image, {k: p.grad for k, p in net.named_parameters()}))
    assert outs[1][1].is_contiguous(memory_format=torch.channels_last)  # the layout did change
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-5, atol=1e-5)
    for k, grad in outs[0][2].items():
        torch.testing.assert_close(outs[1][2][k], grad, rtol=1e-4, atol=1e-6, msg=k)
