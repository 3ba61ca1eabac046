"""VQGAN encoder/decoder and the Tokenizer: shapes, downsampling, encode/decode consistency."""

from __future__ import annotations

import pytest
import torch

from fsq_repro.nets.tokenizer import Tokenizer
from fsq_repro.nets.vqgan import Decoder, Encoder
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
