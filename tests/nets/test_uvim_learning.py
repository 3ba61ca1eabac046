"""Learning check for UViM's Stage I (FSQ paper §4.4): on the embedded depth scenes at 16 px, the guiding-code
autoencoder with the official objective (masked bin cross-entropy, AdamW, warm-up + cosine, clip 1.0) must, within
a fixed number of steps, reconstruct depth from its codes far better than both baselines of ``uvim_eval``:

- the constant prediction (the training set's mean depth map), and
- the same decoder with every code dropped (what the image context alone gives it).

A model whose code carries nothing (a broken bottleneck, no gradient into the encoder) or that does not learn at all
fails the margins; the second test breaks the straight-through path on purpose and checks that it does."""

from __future__ import annotations

import math

import torch

from fsq_repro.lit.schedules import warmup_cosine
from fsq_repro.nets.uvim_vqvae import GuidingCodeAutoencoder
from fsq_repro.quantizers import FSQ
from fsq_repro.tasks.depth.scenes import DepthScenesDataset
from fsq_repro.tasks.depth.task import DepthTask

STEPS, BATCH, LR = 500, 32, 3e-3  # 16 px: 3e-3 learns faster than the official 1e-3 (32 px: 1e-3 is better)


def _stack(dataset, indices) -> dict:
    items = [dataset[i] for i in indices]
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("image", "depth")}


def fit_and_score(break_code: bool = False) -> dict[str, float]:
    """Train ``STEPS`` steps on 16 px scenes; RMSE (metres) on 256 val scenes of the oracle (true codes), the
    context-only decoder (all codes dropped) and the constant baseline."""
    torch.manual_seed(0)
    train = _stack(DepthScenesDataset("train", size=2048, resolution=16), range(2048))
    val = _stack(DepthScenesDataset("val", size=256, resolution=16), range(256))
    task = DepthTask(num_bins=32)
    model = GuidingCodeAutoencoder(FSQ([5, 5, 5]), task.label_classes, input_size=16, patch_size=4, code_len=4,
                                   width=64, enc_depth=1, dec_depth=1, mlp_dim=128, num_heads=4)  # fmt: skip
    if break_code:  # the deliberately broken model: no gradient reaches the encoder through the bottleneck
        quantize = model.quantizer.forward
        model.quantizer.forward = lambda z: quantize(z.detach())
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, 20, STEPS))
    gen = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        idx = torch.randint(0, len(train["depth"]), (BATCH,), generator=gen)
        labels = task.labels({"depth": train["depth"][idx]})
        logits, _ = model(labels, train["image"][idx])
        loss, _ = task.loss(logits, labels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    truth = val["depth"][:, 0]

    def rmse(pred: torch.Tensor) -> float:  # per-image RMSE averaged over images, as metrics/depth.py
        return float(((pred - truth) ** 2).flatten(1).mean(1).sqrt().mean())

    with torch.no_grad():
        q = model.encode(task.labels(val), val["image"])
        oracle = task.predict(model.decode(q.codes, val["image"]))
        context = task.predict(model.decode(torch.zeros_like(q.codes), val["image"]))
    constant = train["depth"][:, 0].mean(0).expand_as(truth)
    return {"oracle": rmse(oracle), "context_only": rmse(context), "constant": rmse(constant)}


def test_depth_oracle_learns_to_beat_both_baselines_clearly() -> None:
    scores = fit_and_score()
    assert all(math.isfinite(v) for v in scores.values()), scores
    # measured: oracle 0.72 m, context only 1.10 m, constant 1.01 m (a model that has not learnt scores ≥ 1.0)
    assert scores["oracle"] < 0.8 * scores["constant"], scores
    assert scores["oracle"] < 0.75 * scores["context_only"], scores  # the code carries what the image does not


def test_the_check_fails_when_the_code_carries_nothing() -> None:
    scores = fit_and_score(break_code=True)
    assert scores["oracle"] > 0.75 * scores["context_only"], scores
