"""Sharded sampling: every position exactly once, independent of the number of shards; ADM .npz layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fsq_repro.generation.sampling_job import generate_shard, labels_for, merge_shards, to_uint8, write_npz


def fake_sampler(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    noise = torch.rand(len(labels), 3, 4, 4, generator=generator)
    return noise * 0.1 + labels.float()[:, None, None, None] / 10 - 0.5


def test_shards_cover_every_sample_once_and_match_a_single_process(tmp_path: Path) -> None:
    labels = labels_for(5, 7)  # 35 samples, class-interleaved
    _, single, single_labels = generate_shard(fake_sampler, labels, 4, seed=3, progress=False)
    shards = []
    for rank in range(3):
        pos, imgs, lab = generate_shard(fake_sampler, labels, 4, seed=3, rank=rank, world_size=3, progress=False)
        path = tmp_path / f"s{rank}.npz"
        np.savez(path, positions=pos, images=imgs, labels=lab)
        shards.append(path)
    images, merged_labels = merge_shards(shards, len(labels))
    assert np.array_equal(images, single) and np.array_equal(merged_labels, single_labels)
    assert np.array_equal(merged_labels, np.tile(np.arange(5), 7))
    out = write_npz(tmp_path / "samples.npz", images, merged_labels)
    with np.load(out) as z:
        assert z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (35, 4, 4, 3) and z["arr_1"].shape == (35,)


def test_to_uint8_matches_adm_conversion() -> None:
    x = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    expected = np.clip(np.round((np.array([-1.0, -0.5, 0.0, 0.999, 1.0, 1.0]) + 1) * 127.5), 0, 255)
    assert np.array_equal(to_uint8(x)[0, 0, :, 0], expected.astype(np.uint8))


def test_gather_shards_merges_on_rank_zero_through_the_shared_folder(tmp_path: Path) -> None:
    """Three ranks as threads with a real barrier: rank 0 gets the single-process result, the others None, and no
    shard file is left behind."""
    import threading

    from fsq_repro.generation.sampling_job import gather_shards

    labels = labels_for(4, 5)
    _, single, single_labels = generate_shard(fake_sampler, labels, 3, seed=1, progress=False)
    barrier, results = threading.Barrier(3), {}

    def rank_main(rank: int) -> None:
        shard = generate_shard(fake_sampler, labels, 3, seed=1, rank=rank, world_size=3, progress=False)
        results[rank] = gather_shards(tmp_path, rank, 3, shard, len(labels), barrier.wait)

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    images, merged = results[0]
    assert np.array_equal(images, single) and np.array_equal(merged, single_labels)
    assert results[1] is None and results[2] is None and list(tmp_path.iterdir()) == []


def test_sample_cli_refuses_a_non_positive_count_in_one_line(capsys) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from fsq_repro.pipeline.entry import run_sample

    configs = Path(__file__).resolve().parents[2] / "configs"
    for override, line in [("num_per_class=0", "error: num_per_class=0 must be a positive integer"),
                           ("batch_size=-4", "error: batch_size=-4 must be a positive integer")]:  # fmt: skip
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
            cfg = compose(config_name="sample", overrides=["run=/nonexistent", override])
        with pytest.raises(SystemExit) as info:
            run_sample(cfg)
        assert info.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [line]
