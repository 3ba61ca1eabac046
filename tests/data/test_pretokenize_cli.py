"""``pretokenize.py`` from the CLI: one process and two (torchrun, gloo) build identical token caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fsq_repro.artifacts import save_tokenizer
from fsq_repro.data.token_cache import check_cache, file_hash
from fsq_repro.nets.tokenizer import Tokenizer
from fsq_repro.quantizers import FSQ
from tests.conftest import ROOT, assert_ok, run_cli, run_distributed

DATA = ["data=shapes", "data.train.size=40", "data.val.size=11", "batch_size=8"]


@pytest.mark.slow
def test_two_processes_write_the_same_cache_as_one(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tok_path = save_tokenizer(tmp_path / "tokenizer.pt", Tokenizer(FSQ([5, 5, 5]), 32, 16, [1, 2], 1, 8))
    one, two = tmp_path / "one", tmp_path / "two"
    assert_ok(run_cli("pretokenize.py", tmp_path / "h1", f"tokenizer={tok_path}", f"out={one}", *DATA))
    run_distributed(ROOT / "pretokenize.py", f"hydra.run.dir={tmp_path / 'h2'}", f"tokenizer={tok_path}",
                    f"out={two}", *DATA)  # fmt: skip
    meta = check_cache(two, file_hash(tok_path))
    assert meta["splits"] == {"train": {"count": 40, "variants": 2}, "val": {"count": 11, "variants": 1}}
    for name in ("train.tokens", "train.labels", "val.tokens", "val.labels"):
        a, b = np.load(one / f"{name}.npy"), np.load(two / f"{name}.npy")
        assert np.array_equal(a, b), name
    assert np.load(two / "train.done.npy").all()


def test_pretokenize_without_a_tokenizer_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("pretokenize.py", tmp_path / "h", "data=shapes")
    assert (
        proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == "error: pass tokenizer=/path/to/tokenizer.pt"
    )


def test_train_split_is_tokenized_without_random_augmentation(tmp_path: Path) -> None:
    from tests.data.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", per_class=5, size=48, corrupt=False)
    torch.manual_seed(0)
    tok_path = save_tokenizer(tmp_path / "tokenizer.pt", Tokenizer(FSQ([5, 5, 5]), 32, 16, [1, 2], 1, 8))
    data = ["data=folder", f"data.root={folder}", "data.resolution=32", "data.num_workers=0", "batch_size=4"]
    for name in ("a", "b"):  # random crops / flips would make the two builds differ
        assert_ok(run_cli("pretokenize.py", tmp_path / f"h{name}", f"tokenizer={tok_path}", f"out={tmp_path / name}",
                          *data))  # fmt: skip
    assert np.array_equal(np.load(tmp_path / "a" / "train.tokens.npy"), np.load(tmp_path / "b" / "train.tokens.npy"))
