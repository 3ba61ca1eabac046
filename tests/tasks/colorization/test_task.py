"""UViM's colorization task against independent re-derivations of the official big_vision code (21bd6eb):
the continuous ``DenseGeneral`` input over ``(3, p²)`` patches (numpy einsum with the official rearrange), the loss
(``jnp.square``), the clip, ``_psnr`` (hand values), ColTran's FID-5k preprocessing (area resize + 8-bit round trip,
by hand) and the Fréchet distance plumbing (a stub extractor and a numpy/scipy closed form)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from fsq_repro.metrics.psnr import psnr
from fsq_repro.nets.uvim_vqvae import GuidingCodeAutoencoder
from fsq_repro.quantizers import FSQ
from fsq_repro.tasks.colorization.data import ColorizationDataset, grayscale
from fsq_repro.tasks.colorization.task import ColorizationTask, to_uint8_coltran


def test_continuous_input_is_the_official_dense_general_over_colour_patches() -> None:
    """official input_pp: ``b (hn hp) (wn wp) c -> b (hn wn) c (hp wp)``, then DenseGeneral with kernel (C, p², D)."""
    torch.manual_seed(0)
    arch = dict(input_size=8, patch_size=4, code_len=4, width=6, enc_depth=1, dec_depth=1, mlp_dim=8, num_heads=2)
    model = GuidingCodeAutoencoder(FSQ(levels=[5, 5, 5]), {}, label_channels={"color": 3}, **arch)
    emb = model.embeddings["color"]
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    kernel = emb.conv.weight.detach().numpy().reshape(6, 3, 16).transpose(1, 2, 0)  # (C, p², D)
    channels_last = x.permute(0, 2, 3, 1).numpy()  # b h w c
    patches = channels_last.reshape(2, 2, 4, 2, 4, 3).transpose(0, 1, 3, 5, 2, 4).reshape(2, 4, 3, 16)
    expected = np.einsum("bncj,cjd->bnd", patches, kernel) + emb.conv.bias.detach().numpy()
    assert np.allclose(emb(x).detach().numpy(), expected, atol=1e-5)
    logits, _ = model({"color": x}, grayscale(x))
    assert logits["color"].shape == (2, 3, 8, 8) and torch.count_nonzero(logits["color"]) == 0  # zero-init head


def test_loss_clip_and_grayscale_by_hand() -> None:
    task = ColorizationTask(extractor="shapes")
    rng = np.random.default_rng(0)
    pred, truth = rng.uniform(-1.5, 1.5, (2, 3, 4, 4)), rng.uniform(-1, 1, (2, 3, 4, 4))
    loss, _ = task.loss({"color": torch.from_numpy(pred)}, {"color": torch.from_numpy(truth).float()})
    assert loss.item() == pytest.approx(np.mean((pred - truth) ** 2), rel=1e-6)
    out = task.predict({"color": torch.tensor([-1.7, -0.3, 2.0])})
    assert out.tolist() == pytest.approx([-1.0, -0.3, 1.0])
    rgb = torch.tensor([1.0, 0.0, -1.0]).view(1, 3, 1, 1)
    assert grayscale(rgb).flatten().tolist() == pytest.approx([0.2989 - 0.1140] * 3)


def test_psnr_and_coltran_quantisation_by_hand() -> None:
    truth = torch.zeros(2, 3, 4, 4)
    pred = truth + torch.tensor([0.1, 0.2]).view(2, 1, 1, 1)  # MSE 0.01 and 0.04
    assert psnr(pred, truth).tolist() == pytest.approx(
        [20 * math.log10(2) + 20, 20 * math.log10(2) + 10 * math.log10(25)]
    )
    assert psnr(truth, truth).isinf().all()  # the official definition: a perfect reconstruction is inf dB
    assert psnr(truth, truth, min_mse=1e-10).tolist() == pytest.approx([10 * math.log10(4 / 1e-10)] * 2)  # logs
    x = torch.tensor([[-1.0, 0.0], [1.0, 0.5]]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert to_uint8_coltran(x, None)[0, 0].tolist() == [[0, 128], [255, 192]]  # (y + 1)·128, 256 clipped
    big = torch.arange(16.0).view(1, 1, 4, 4).expand(1, 3, 4, 4) / 8 - 1  # area resize = 2×2 block means
    means = np.array([[2.5, 4.5], [10.5, 12.5]]) / 8 - 1
    assert to_uint8_coltran(big, 2)[0, 0].numpy().tolist() == np.round((means + 1) * 128).astype(int).tolist()


class StubExtractor(torch.nn.Module):
    """Features = per-channel mean and std of the uint8 image (a deterministic stand-in for Inception)."""

    label = "FD-stub"

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, images: torch.Tensor) -> dict:
        x = images.float().flatten(2)
        return {"features": torch.cat([x.mean(2), x.std(2)], 1)}


def _fd(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


class Colours(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": 0}


@pytest.mark.parametrize("reference", [True, False])
def test_frechet_distance_against_the_reference_pool(monkeypatch, reference: bool) -> None:
    monkeypatch.setattr("fsq_repro.extractors.build_extractor", lambda *a, **k: StubExtractor())
    base = Colours(40)
    data = ColorizationDataset(base, count=20, reference_start=20 if reference else None)
    task = ColorizationTask(extractor="stub", eval_size=4)
    metric = task.metric(data)
    batch = torch.utils.data.default_collate([data[i] for i in range(20)])
    pred = (batch["color"] * 0.5).clamp(-1, 1)  # desaturated predictions
    metric.update(pred[:12], {"color": batch["color"][:12]})
    metric.update(pred[12:], {"color": batch["color"][12:]})
    out = metric.compute()

    def feats(images: torch.Tensor) -> np.ndarray:
        return StubExtractor()(to_uint8_coltran(images, 4))["features"].double().numpy()

    ref = base.images[20:40] if reference else batch["color"]
    assert out["fd"] == pytest.approx(_fd(feats(pred), feats(ref)), rel=1e-6)
    assert out["num_reference"] == 20 and metric.feature_space == "FD-stub"
    assert out["psnr"] == pytest.approx(psnr(pred, batch["color"]).mean().item())
