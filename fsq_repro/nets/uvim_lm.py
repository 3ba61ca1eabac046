"""UViM Stage II: the encoder-decoder language model that predicts the guiding code from the image (FSQ paper §4.4;
UViM §3.2; big_vision ``models/proj/uvim/vtt.py`` and ``trainers/proj/uvim/train.py`` at 21bd6eb).

- Encoder: a ViT over the image (stride-p patch convolution + learned position embedding + ``num_layers`` pre-LN
  blocks + LayerNorm); the paper starts it from an ImageNet-21k ViT-L/16 (``load_vit_encoder``).
- Decoder: ``num_layers`` blocks of [LN → causal self-attention (no bias) → +res; LN → cross-attention on the encoded
  image (no bias) → +res; LN → MLP → +res], a final LN and zero-initialised logits over ``codebook_size + 1`` tokens.
  Token 0 is BOS / padding (``shift_right`` pads with 0): code ``c`` is token ``c + 1`` (official ``code + 1``).
- Loss: token cross-entropy, mean over tokens (official ``weighted_softmax_xent(normalize=True)``).

Decoding one token at a time with key/value caches is ``generation/autoregressive.py``.
Shapes: ``image (B, 3, R, R)`` in [−1, 1], ``codes (B, L)`` in ``[0, C)`` → logits ``(B, L, C + 1)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fsq_repro.errors import ConfigError
from fsq_repro.nets.vit import Attention, MlpBlock, PatchEmbed, PositionEmbedding, ViTEncoder, dense


class DecoderBlock(nn.Module):
    """vtt.py ``EncoderDecoderBlock``; ``cache`` (a dict per block) enables one-position-at-a-time decoding."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(dim, eps=1e-6) for _ in range(3))
        # vtt.py passes no kernel_init to SelfAttn / CrossAttn: flax's default LeCun normal (nets/vit.py docstring)
        self.self_attn = Attention(dim, num_heads, bias=False, dropout=dropout, init="lecun")
        self.cross_attn = Attention(dim, num_heads, bias=False, dropout=dropout, init="lecun")
        self.mlp = MlpBlock(dim, mlp_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, encoded: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.drop(self.self_attn(self.norm1(x), causal=True, cache=None if cache is None else cache["self"]))
        x = x + self.drop(self.cross_attn(self.norm2(x), context=encoded))
        return x + self.drop(self.mlp(self.norm3(x)))


class UViMLanguageModel(nn.Module):
    def __init__(
        self,
        codebook_size: int,
        seq_len: int = 256,  # official: the Stage I code_len
        input_size: int = 512,  # official RES
        patch_size: int = 16,  # official
        width: int = 1024,  # official VTT_MODELS["large"]
        num_layers: int = 24,
        num_heads: int = 16,
        mlp_dim: int = 4096,
        dropout: float = 0.0,
        posemb: str = "learn",  # official posemb_type
    ) -> None:
        super().__init__()
        if input_size % patch_size:
            raise ConfigError(f"uvim lm input_size={input_size} is not a multiple of patch_size={patch_size}")
        self.codebook_size, self.seq_len, self.vocab_size = int(codebook_size), int(seq_len), int(codebook_size) + 1
        self.arch = dict(codebook_size=codebook_size, seq_len=seq_len, input_size=input_size, patch_size=patch_size,
                         width=width, num_layers=num_layers, num_heads=num_heads, mlp_dim=mlp_dim, dropout=dropout,
                         posemb=posemb)  # fmt: skip
        grid = input_size // patch_size
        self.patch_embed = PatchEmbed(3, width, patch_size)
        self.pos_enc = PositionEmbedding((grid, grid), width, posemb)
        self.encoder = ViTEncoder(num_layers, width, num_heads, mlp_dim, dropout)
        self.token_embed = nn.Embedding(self.vocab_size, width)
        nn.init.normal_(self.token_embed.weight, std=1.0)  # flax nn.Embed(embedding_init=normal(1.0))
        self.pos_dec = PositionEmbedding((1, self.seq_len), width, "learn")
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(DecoderBlock(width, num_heads, mlp_dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.logits = dense(width, self.vocab_size, init="zeros")

    def config(self) -> dict:
        return dict(self.arch)

    def encoder_parameter_names(self) -> list[str]:
        """The official ``lr_mults`` 0.1 group: patch embedding, encoder position embedding, encoder."""
        return [n for n, _ in self.named_parameters() if n.split(".")[0] in ("patch_embed", "pos_enc", "encoder")]

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.pos_enc(self.patch_embed(image)))

    def decode(self, encoded: torch.Tensor, tokens: torch.Tensor, offset: int = 0,
               caches: list[dict] | None = None) -> torch.Tensor:  # fmt: skip
        """Decoder on input ``tokens (B, l)`` at positions ``offset …``; with ``caches`` the earlier positions' keys
        and values are read from / appended to them. → logits ``(B, l, C + 1)``."""
        x = self.drop(self.pos_dec(self.token_embed(tokens), offset=offset))
        for i, block in enumerate(self.blocks):
            x = block(x, encoded, None if caches is None else caches[i])
        return self.logits(self.norm(x))

    def forward(self, image: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the input is ``shift_right(codes + 1)`` (BOS = 0)."""
        tokens = F.pad(codes + 1, (1, 0))[:, :-1]
        return self.decode(self.encode(image), tokens)

    @staticmethod
    def loss(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Mean token cross-entropy (float32) of ``logits (B, L, C + 1)`` against tokens ``codes + 1``."""
        return F.cross_entropy(logits.float().flatten(0, 1), (codes + 1).flatten())

    def _timm_to_ours(self, state: dict) -> dict:
        """timm ViT keys → this encoder's (qkv split into q, k, v; class-token position dropped, grid resized)."""
        d, grid = self.arch["width"], self.arch["input_size"] // self.arch["patch_size"]
        ours = {"patch_embed.conv.weight": state["patch_embed.proj.weight"],
                "patch_embed.conv.bias": state["patch_embed.proj.bias"],
                "encoder.norm.weight": state["norm.weight"], "encoder.norm.bias": state["norm.bias"]}  # fmt: skip
        pos = state["pos_embed"]
        if pos.shape[1] == round((pos.shape[1] - 1) ** 0.5) ** 2 + 1:
            pos = pos[:, 1:]  # the class token's position
        side = round(pos.shape[1] ** 0.5)
        if side != grid:
            pos = pos.reshape(1, side, side, d).permute(0, 3, 1, 2).float()
            pos = F.interpolate(pos, size=(grid, grid), mode="bilinear", align_corners=False)
            pos = pos.permute(0, 2, 3, 1).reshape(1, grid * grid, d)
        ours["pos_enc.pos"] = pos
        renames = (("norm1", "norm1"), ("norm2", "norm2"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"),
                   ("attn.proj", "attn.out"))  # fmt: skip
        for i in range(self.arch["num_layers"]):
            src, dst = f"blocks.{i}.", f"encoder.blocks.{i}."
            for kind in ("weight", "bias"):
                for a, b in renames:
                    ours[f"{dst}{b}.{kind}"] = state[f"{src}{a}.{kind}"]
                for name, part in zip("qkv", state[f"{src}attn.qkv.{kind}"].chunk(3, dim=0), strict=True):
                    ours[f"{dst}attn.{name}.{kind}"] = part
        return ours

    # --- the paper's ImageNet-21k initialisation of the encoder -----------------------------------------------
    def load_vit_encoder(self, path: str | Path) -> None:
        """Initialise the image encoder from a local timm-format ViT state dict (e.g. ViT-L/16 ImageNet-21k:
        ``patch_embed.proj``, ``pos_embed`` (class token dropped; grid resized bilinearly when it differs),
        ``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``), loaded with
        ``weights_only=True``."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"model.stage2.encoder_weights={path} does not exist (a timm ViT-L/16 state dict, e.g. "
                              "vit_large_patch16_224.augreg_in21k .pth/.safetensors)")  # fmt: skip
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise ConfigError("reading .safetensors needs the safetensors package (or convert to .pth)") from None
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        try:
            ours = self._timm_to_ours(state)
        except KeyError as err:
            raise ConfigError(f"{path} is not a timm ViT state dict: no {err.args[0]!r}") from None
        own = self.state_dict()
        for key, value in ours.items():
            if tuple(own[key].shape) != tuple(value.shape):
                raise ConfigError(f"{path}: {key} has shape {tuple(value.shape)}, this encoder {tuple(own[key].shape)}")
        self.load_state_dict(ours, strict=False)
