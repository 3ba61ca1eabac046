"""tokenizer.pt: weights_only round trip, bit-exact encode/decode, corrupt or foreign files refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fsq_repro.artifacts import load_tokenizer, save_tokenizer
from fsq_repro.errors import ConfigError
from fsq_repro.nets.tokenizer import Tokenizer
from fsq_repro.quantizers import FSQ, VectorQuantizer


@pytest.mark.parametrize("quantizer", [FSQ([8, 5, 5, 5]), VectorQuantizer(32, dim=6)])
def test_export_load_is_bit_exact(tmp_path: Path, quantizer) -> None:
    torch.manual_seed(0)
    tok = Tokenizer(quantizer, resolution=16, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1).eval()
    path = save_tokenizer(tmp_path / "tokenizer.pt", tok, data_fingerprint="shapes-test")
    raw = torch.load(path, weights_only=True)  # plain containers only
    assert raw["codebook_size"] == quantizer.codebook_size and raw["token_grid"] == [8, 8]
    loaded = load_tokenizer(path)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    tokens = tok.encode(x)
    assert torch.equal(loaded.encode(x), tokens)
    assert torch.equal(loaded.decode(tokens), tok.decode(tokens))
    assert loaded.codebook_size == quantizer.codebook_size and loaded.data_fingerprint == "shapes-test"
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_corrupt_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_tokenizer(tmp_path / "nope.pt")
    tok = Tokenizer(FSQ([5, 5, 5]), resolution=8, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1)
    good = save_tokenizer(tmp_path / "t.pt", tok).read_bytes()
    (tmp_path / "trunc.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ConfigError, match="not a readable tokenizer file"):
        load_tokenizer(tmp_path / "trunc.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match=r"is not a fsq_repro\.tokenizer/v1 file"):
        load_tokenizer(tmp_path / "other.pt")
