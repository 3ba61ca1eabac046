"""Feature extractors: our FID pipeline vs torchmetrics and torch-fidelity on the same (random-init, test-only)
Inception weights; missing weights are a one-line error; the shapes classifier really classifies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fsq_repro.errors import ConfigError
from fsq_repro.extractors.inception import InceptionFeatures, find_inception_weights
from fsq_repro.extractors.shapes import ShapesClassifierFeatures
from fsq_repro.metrics import feature_statistics, frechet_distance


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> Path:
    """A state dict of the TF-ported Inception architecture with random init (stand-in: nothing can be downloaded).
    Used only to check that three pipelines compute the same number; never reported as FID."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    original = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, state, *a, **k: None
    try:
        import torch_fidelity.feature_extractor_inceptionv3 as module

        saved_url_loader = module.load_state_dict_from_url
        module.load_state_dict_from_url = lambda *a, **k: {}
        torch.manual_seed(0)
        net = FeatureExtractorInceptionV3("random", ["2048"])
    finally:
        FeatureExtractorInceptionV3.load_state_dict = original
        module.load_state_dict_from_url = saved_url_loader
    for m in net.modules():  # variance-preserving init, so the 2048-d features stay O(1) through ~90 layers
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def _images(seed: int, n: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 8, 8, generator=g)
    up = torch.nn.functional.interpolate(base, size=64, mode="bilinear") * 255
    return up.round().clamp(0, 255).to(torch.uint8)


@pytest.mark.slow
def test_our_fid_matches_torchmetrics_and_torch_fidelity(random_inception_weights: Path) -> None:
    import torch_fidelity
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _images(1), _images(2)
    ours_net = InceptionFeatures(random_inception_weights)
    fr, ff = ours_net(real)["features"], ours_net(fake)["features"]
    ours = frechet_distance(*feature_statistics(fr), *feature_statistics(ff))

    tm = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(random_inception_weights),
                                  antialias=False)  # fmt: skip
    tm.set_dtype(torch.float64)
    tm.update(real, real=True)
    tm.update(fake, real=False)
    theirs_tm = float(tm.compute())

    class DS(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    theirs_tf = torch_fidelity.calculate_metrics(
        input1=DS(real), input2=DS(fake), fid=True, feature_extractor_weights_path=str(random_inception_weights),
        cuda=False, verbose=False, batch_size=16, save_cpu_ram=True,
    )["frechet_inception_distance"]  # fmt: skip
    print(f"FD ours {ours:.10g} torch-fidelity {theirs_tf:.10g} torchmetrics {theirs_tm:.10g}")
    assert ours > 1e-3  # features of a healthy scale (not a vanishing random network)
    assert ours == pytest.approx(theirs_tf, rel=1e-4)
    assert ours == pytest.approx(theirs_tm, rel=1e-4)


def test_missing_inception_weights_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match=r"pass metrics\.inception_weights="):
        find_inception_weights(tmp_path / "nope.pth")


@pytest.mark.slow
def test_shapes_classifier_is_trained_once_and_classifies(shapes_cache_dir: Path) -> None:
    from fsq_repro.data.embedded import ShapesDataset
    from fsq_repro.generation.sampling_job import to_uint8

    extractor = ShapesClassifierFeatures(shapes_cache_dir)
    assert extractor.val_accuracy > 0.95
    again = ShapesClassifierFeatures(shapes_cache_dir)  # cached: same weights, no training
    assert all(torch.equal(a, b) for a, b in zip(extractor.state_dict().values(), again.state_dict().values()))
    val = ShapesDataset("val", size=200, resolution=32)
    images = torch.from_numpy(to_uint8(torch.stack([val[i]["image"] for i in range(200)]))).permute(0, 3, 1, 2)
    out = extractor(images)
    labels = np.array([val[i]["label"] for i in range(200)])
    assert out["features"].shape == (200, 128)
    assert (out["logits"].argmax(1).numpy() == labels).mean() > 0.95


def test_sfid_features_are_mixed_6d_1x1_first_7_channels_in_nhwc_order(
    random_inception_weights: Path, tmp_path
) -> None:
    """sFID (ADM suite: ``mixed_6/conv:0[..., :7]``): 17·17·7 = 2023 dims, flattened as TF's NHWC; then the plumbing —
    reference ``mu_s``/``sigma_s`` written, ADM-style reference batches read, ``rsfd`` = FD of the spatial rows."""
    from fsq_repro.evaluation.maskgit import EvalOptions, compute_reference, extract, image_metrics, load_reference

    net = InceptionFeatures(random_inception_weights)
    seen = []
    net.net.Mixed_6d.branch1x1.register_forward_hook(lambda _m, _i, out: seen.append(out.clone()))
    images = _images(5, n=3)
    out = net(images)
    act = seen[-1].numpy()  # (3, 192, 17, 17): the 1×1 branch after conv, batch norm and ReLU
    assert act.shape == (3, 192, 17, 17) and out["spatial"].shape == (3, 2023)
    b, c, h, w = 2, 5, 11, 3
    assert out["spatial"][b, (h * 17 + w) * 7 + c] == pytest.approx(float(act[b, c, h, w]), rel=1e-6)
    assert np.allclose(out["spatial"].numpy(), act[:, :7].transpose(0, 2, 3, 1).reshape(3, -1))

    options = EvalOptions(batch_size=4, device="cpu")
    ref_path = tmp_path / "ref.npz"
    compute_reference(net, [_images(1, n=3), _images(2, n=3)], ref_path, options)
    ref = load_reference(ref_path, net, options)
    assert ref.stats["mu_s"].shape == (2023,) and ref.stats["sigma_s"].shape == (2023, 2023)
    feats = extract(net, [_images(3, n=4)], "cpu")
    result = image_metrics(net, feats, ref, options, prefix="r")
    mu_s, sigma_s = feature_statistics(feats["spatial"])
    assert result["rsfd"] == pytest.approx(frechet_distance(mu_s, sigma_s, ref.stats["mu_s"], ref.stats["sigma_s"]))
    assert result["rsfd"] != pytest.approx(result["rfd"])
    # an ADM reference batch: images + precomputed mu/sigma/mu_s/sigma_s (no feature rows): P/R features come from arr_0
    adm = tmp_path / "VIRTUAL_ref.npz"
    arr_0 = _images(4, n=3).permute(0, 2, 3, 1).numpy()
    np.savez(adm, arr_0=arr_0, mu=ref.stats["mu"], sigma=ref.stats["sigma"], mu_s=ref.stats["mu_s"],
             sigma_s=ref.stats["sigma_s"])  # fmt: skip
    adm_ref = load_reference(adm, net, options)
    assert adm_ref.stats["features"].shape == (3, 2048)
    assert np.allclose(adm_ref.stats["features"], net(_images(4, n=3))["features"].numpy(), atol=1e-5)  # from arr_0
    # the precomputed statistics are taken as given, so image_metrics on them is the rsfd above (one sqrtm of a
    # 2023² matrix costs ~30 s on CI's CPU: compare the statistics instead of recomputing the distances)
    for key in ("mu", "sigma", "mu_s", "sigma_s"):
        assert np.array_equal(adm_ref.stats[key], ref.stats[key]), key
