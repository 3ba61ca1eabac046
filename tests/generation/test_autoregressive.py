"""UViM's autoregressive decoding: key/value-cached decoding equals the uncached reference token for token, and
both equal an independent greedy loop over full teacher-forced forwards; plus the language model's token layout."""

from __future__ import annotations

import math

import pytest
import torch

from fsq_repro.errors import ConfigError
from fsq_repro.generation.autoregressive import decode
from fsq_repro.nets.uvim_lm import UViMLanguageModel


def model(seed: int = 0, **kw) -> UViMLanguageModel:
    torch.manual_seed(seed)
    args = dict(seq_len=10, input_size=16, patch_size=8, width=32, num_layers=2, num_heads=4, mlp_dim=64)
    m = UViMLanguageModel(40, **{**args, **kw})
    torch.nn.init.normal_(m.logits.weight, std=0.5)  # zero-init logits would make every argmax 0
    return m.eval()


def test_cached_equals_uncached_and_a_plain_greedy_loop() -> None:
    m, image = model(), torch.randn(3, 3, 16, 16)
    cached, uncached = decode(m, image), decode(m, image, use_cache=False)
    assert torch.equal(cached, uncached) and len(set(cached.flatten().tolist())) > 3
    # independent oracle: greedy over full forwards, model(image, prefix + anything) read at the last position
    codes = torch.zeros(3, 0, dtype=torch.long)
    with torch.no_grad():
        for t in range(m.seq_len):
            logits = m(image, torch.cat([codes, torch.zeros(3, 1, dtype=torch.long)], 1))[:, t]
            logits[:, 0] = -math.inf
            codes = torch.cat([codes, logits.argmax(-1, keepdim=True) - 1], 1)
    assert torch.equal(cached, codes)


def test_temperature_sampling_same_draws_with_and_without_cache() -> None:
    m, image = model(1), torch.randn(4, 3, 16, 16)
    a = decode(m, image, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = decode(m, image, temperature=1.0, generator=torch.Generator().manual_seed(3), use_cache=False)
    c = decode(m, image, temperature=1.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() < 40  # never BOS


def test_cached_step_logits_equal_teacher_forced_logits() -> None:
    m, image = model(2), torch.randn(2, 3, 16, 16)
    codes = torch.randint(0, 40, (2, 10))
    with torch.no_grad():
        full = m(image, codes)
        encoded, caches = m.encode(image), [{"self": {}} for _ in m.blocks]
        tokens = torch.nn.functional.pad(codes + 1, (1, 0))[:, :-1]
        steps = [m.decode(encoded, tokens[:, t : t + 1], offset=t, caches=caches) for t in range(10)]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)


def test_token_layout_causality_and_initial_loss() -> None:
    m = UViMLanguageModel(40, seq_len=6, input_size=16, patch_size=8, width=32, num_layers=1, num_heads=4, mlp_dim=64)
    image, codes = torch.randn(2, 3, 16, 16), torch.randint(0, 40, (2, 6))
    logits = m(image, codes)
    assert logits.shape == (2, 6, 41)
    assert m.loss(logits, codes).item() == pytest.approx(math.log(41), rel=1e-6)  # zero-init logits: uniform
    m = model(3, seq_len=6)
    changed = codes.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 40
    with torch.no_grad():
        a, b = m(image, codes), m(image, changed)
    assert torch.equal(a[:, :4], b[:, :4]) and not torch.allclose(a[:, 4:], b[:, 4:])  # input t+1 sees code t
    # cross-entropy by hand on one row: −log softmax(logits)[code + 1]
    manual = -torch.log_softmax(a, -1).gather(-1, (codes + 1)[..., None]).mean()
    assert m.loss(a, codes).item() == pytest.approx(manual.item(), rel=1e-6)


def timm_forward(state: dict, image: torch.Tensor, depth: int, heads: int) -> torch.Tensor:
    """A timm ViT's patch tokens written with plain ops on its state dict (fused qkv, class token present)."""
    x = torch.nn.functional.conv2d(image, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=8)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([torch.zeros(x.shape[0], 1, x.shape[2]), x], 1) + state["pos_embed"]
    x = x[:, 1:]  # our encoder has no class token; attention over patches only
    fn, d = torch.nn.functional, x.shape[-1]

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(t.shape[0], t.shape[1], heads, d // heads).transpose(1, 2)

    for i in range(depth):
        p = {n.removeprefix(f"blocks.{i}."): v for n, v in state.items() if n.startswith(f"blocks.{i}.")}
        h = fn.layer_norm(x, (d,), p["norm1.weight"], p["norm1.bias"], eps=1e-6)
        q, k, v = fn.linear(h, p["attn.qkv.weight"], p["attn.qkv.bias"]).chunk(3, -1)
        att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads), -1) @ split(v)
        x = x + fn.linear(att.transpose(1, 2).reshape(x.shape), p["attn.proj.weight"], p["attn.proj.bias"])
        h = fn.layer_norm(x, (d,), p["norm2.weight"], p["norm2.bias"], eps=1e-6)
        h = fn.gelu(fn.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"]), approximate="tanh")
        x = x + fn.linear(h, p["mlp.fc2.weight"], p["mlp.fc2.bias"])
    return fn.layer_norm(x, (d,), state["norm.weight"], state["norm.bias"], eps=1e-6)


def test_encoder_loads_a_timm_vit_state_dict(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    d, depth = 32, 2
    state = {"patch_embed.proj.weight": torch.randn(d, 3, 8, 8, generator=g) * 0.05,
             "patch_embed.proj.bias": torch.randn(d, generator=g) * 0.1,
             "pos_embed": torch.randn(1, 5, d, generator=g) * 0.1,
             "norm.weight": 1 + 0.1 * torch.randn(d, generator=g),
             "norm.bias": 0.1 * torch.randn(d, generator=g)}  # fmt: skip
    for i in range(depth):
        for name, shape in (("norm1", (d,)), ("norm2", (d,)), ("attn.qkv", (3 * d, d)), ("attn.proj", (d, d)),
                            ("mlp.fc1", (64, d)), ("mlp.fc2", (d, 64))):  # fmt: skip
            state[f"blocks.{i}.{name}.weight"] = torch.randn(*shape, generator=g) * (0.1 if len(shape) > 1 else 1)
            state[f"blocks.{i}.{name}.bias"] = torch.randn(shape[0], generator=g) * 0.1
    torch.save(state, tmp_path / "vit.pth")
    m = UViMLanguageModel(40, seq_len=4, input_size=16, patch_size=8, width=d, num_layers=depth, num_heads=4,
                          mlp_dim=64)  # fmt: skip
    m.load_vit_encoder(tmp_path / "vit.pth")
    image = torch.randn(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        assert torch.allclose(m.encode(image), timm_forward(state, image, depth, 4), atol=1e-5)
    with pytest.raises(ConfigError, match="encoder_weights"):
        m.load_vit_encoder(tmp_path / "missing.pth")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="not a timm ViT"):
        m.load_vit_encoder(tmp_path / "other.pth")
    assert {n.split(".")[0] for n in m.encoder_parameter_names()} == {"patch_embed", "pos_enc", "encoder"}


def test_decoder_attention_init_is_flax_default_lecun_normal_and_encoder_is_xavier() -> None:
    """vtt.py's SelfAttn / CrossAttn take flax's default kernel init (LeCun normal, truncated at ±2σ of the
    underlying normal, std corrected to 1/√D); the ViT encoder's attention is big_vision vit.py's xavier uniform.
    Both have variance 1/D on a (D, D) kernel: the shape tells them apart (kurtosis 1.8 uniform, ≈ 2.36 truncated
    normal; max |w| ≤ √3/√D uniform, up to 2/0.8796/√D truncated normal)."""
    torch.manual_seed(0)
    width = 256
    m = UViMLanguageModel(40, seq_len=4, input_size=16, patch_size=8, width=width, num_layers=2, num_heads=4,
                          mlp_dim=64)  # fmt: skip

    def stats(weights: list[torch.Tensor]) -> tuple[float, float, float]:
        w = torch.cat([x.detach().flatten().double() for x in weights])
        std = float(w.std())
        return (
            std * math.sqrt(width),
            float(((w - w.mean()) ** 4).mean() / w.var() ** 2),
            float(w.abs().max()) * math.sqrt(width),
        )

    decoder = [getattr(getattr(b, a), p).weight for b in m.blocks for a in ("self_attn", "cross_attn")
               for p in ("q", "k", "v", "out")]  # fmt: skip
    encoder = [getattr(b.attn, p).weight for b in m.encoder.blocks for p in ("q", "k", "v", "out")]
    std, kurtosis, peak = stats(decoder)
    assert abs(std - 1.0) < 0.02 and 2.25 < kurtosis < 2.5 and 2.0 < peak <= 2 / 0.87962566103423978 + 1e-6
    std, kurtosis, peak = stats(encoder)
    assert abs(std - 1.0) < 0.02 and abs(kurtosis - 1.8) < 0.05 and peak <= math.sqrt(3) + 1e-6
