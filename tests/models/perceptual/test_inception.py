"""FID: the Inception features against an independent PyTorch reference written from pytorch-fid
(benchmarks/peers/torch_inception.py) at random weights in the layout of pytorch-fid's weight
file (fp32, batch 2), the distance against pytorch-fid's formula and an eigendecomposition, the
streaming statistics, and clear errors for bad files and inputs."""
import logging

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.peers import torch_inception as ref
from jaxdeg.errors import UserError
from jaxdeg.metrics import fid
from jaxdeg.models import perceptual
from jaxdeg.models.perceptual import inception, weights

FEATURE_TOLERANCE = 1e-4  # relative to the largest feature; measured ~3e-7 (torch BN vs folded BN)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """(pth path, npz path, the torch state dict) of random weights; the fc layer is in there too."""
  folder = tmp_path_factory.mktemp("fid_weights")
  state = ref.random_fid_inception_state(0)
  pth = str(folder / "pt_inception.pth")
  torch.save(state, pth)
  npz = str(folder / "pt_inception.npz")
  weights.to_npz(pth, npz)
  return pth, npz, state


@pytest.fixture(scope="module")
def model(files):
  return perceptual.load_inception(files[0])


@pytest.fixture(scope="module")
def images():
  """(2, 120, 96, 3) in [0, 1]: a smooth image and random texture; the network resizes to 299²."""
  rng = np.random.default_rng(0)
  ramp_h, ramp_w = np.linspace(0.0, 1.0, 120), np.linspace(0.0, 1.0, 96)
  smooth = np.stack([np.add.outer(ramp_h, ramp_w) / 2, np.outer(ramp_h, 1 - ramp_w), np.full((120, 96), 0.3)], -1)
  return np.stack([smooth, rng.random((120, 96, 3))]).astype(np.float32)


def test_features_match_the_torch_reference(files, model, images):
  _, _, state = files
  expected = ref.pool3_features(state, images)
  got = np.asarray(model(images))
  scale = float(np.max(np.abs(expected)))
  diff = float(np.max(np.abs(got - expected)))
  print(f"features: max |torch| {scale:.3f}, max abs diff {diff:.2e}, relative {diff / scale:.2e}")
  assert got.shape == expected.shape == (2, 2048)
  assert np.std(expected) > 0.1 and np.max(np.abs(expected[0] - expected[1])) > 0.1  # non-trivial
  assert diff <= FEATURE_TOLERANCE * scale


def test_npz_copy_loads_the_same_params(files, model):
  _, npz, _ = files
  from_npz = perceptual.load_inception(npz)
  same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), from_npz.params, model.params)
  assert all(jax.tree.leaves(same))
  assert len(jax.tree.leaves(model.params)) == 2 * 94  # 94 convolutions, each kernel and folded bias


@pytest.mark.parametrize("size", [(13, 17), (299, 299), (512, 401), (300, 1000)])
def test_resize_matches_torch_bilinear(size):
  x = np.random.default_rng(1).random((2, *size, 3), dtype=np.float32)
  expected = F.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)), size=(299, 299), mode="bilinear",
                           align_corners=False).numpy().transpose(0, 2, 3, 1)
  got = np.asarray(inception.resize_bilinear(x))
  assert got.shape == (2, 299, 299, 3)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def _gaussian_features(rng, n, dim, shift):
  mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
  return shift + rng.standard_normal((n, dim)) @ mixing


def test_frechet_distance_matches_pytorch_fid_and_an_eigendecomposition():
  rng = np.random.default_rng(2)
  real, fake = _gaussian_features(rng, 300, 64, 0.0), _gaussian_features(rng, 250, 64, 0.3)
  stats = [*ref.activation_statistics(real), *ref.activation_statistics(fake)]
  expected = ref.calculate_frechet_distance(*stats)
  by_eigh = ref.frechet_distance_eigh(*stats)
  for method in ("eigh", "sqrtm"):
    got = fid.frechet_distance(*stats, method=method)
    print(f"FID ({method}) {got!r}, pytorch-fid {expected!r}, eigh {by_eigh!r}")
    assert isinstance(got, float) and got > 1.0
    assert abs(got - expected) <= 1e-6 * expected
    assert abs(got - by_eigh) <= 1e-6 * by_eigh
  # fewer rows than dimensions (singular covariances, as a small eval set's 2048-d features)
  few = [*ref.activation_statistics(real[:40]), *ref.activation_statistics(fake[:30])]
  expected = ref.calculate_frechet_distance(*few)
  assert abs(fid.frechet_distance(*few) - expected) <= 1e-6 * expected
  with pytest.raises(UserError, match="method"):
    fid.frechet_distance(*stats, method="newton")


def test_fewer_rows_than_dimensions_use_the_rows_and_agree_with_pytorch_fid():
  """Small sets (rows < D on both sides) take the exact low-rank path; batches that cross D rows
  fall back to the covariances; both equal pytorch-fid's sqrtm value."""
  rng = np.random.default_rng(5)
  real, fake = _gaussian_features(rng, 40, 64, 0.0), _gaussian_features(rng, 30, 64, 0.4)
  acc = fid.FidAccumulator()
  for k in range(4):
    acc.add(real[10 * k:10 * (k + 1)], fake[8 * k:8 * (k + 1)] if k < 3 else fake[24:])
  assert acc.real.centred_rows().shape == (40, 64) and acc.fake.centred_rows().shape == (30, 64)
  expected = ref.calculate_frechet_distance(*ref.activation_statistics(real), *ref.activation_statistics(fake))
  print(f"low-rank FID {acc.result()!r}, pytorch-fid {expected!r}")
  assert abs(acc.result() - expected) <= 1e-6 * expected
  more = _gaussian_features(rng, 30, 64, 0.0)
  acc.add(real_features=more)  # 70 rows > 64: the covariance path
  assert acc.real.centred_rows() is None
  expected = ref.calculate_frechet_distance(*ref.activation_statistics(np.concatenate([real, more])),
                                            *ref.activation_statistics(fake))
  assert abs(acc.result() - expected) <= 1e-6 * expected


def test_identical_sets_give_zero():
  features = _gaussian_features(np.random.default_rng(3), 200, 64, 1.0)
  acc = fid.FidAccumulator().add(features, features)
  assert abs(acc.result()) < 1e-8


def test_streaming_statistics_equal_one_shot_numpy():
  rng = np.random.default_rng(4)
  # a large common offset: the one-pass sums must not lose the covariance to cancellation
  batches = [_gaussian_features(rng, n, 32, 100.0) for n in (7, 1, 0, 30, 12)]
  stats = fid.FeatureStats()
  for batch in batches:
    stats.add(batch.astype(np.float32) if len(batch) == 30 else batch)  # float32 batches are welcome
  everything = np.concatenate([b.astype(np.float32) if len(b) == 30 else b for b in batches])
  assert stats.count == 50
  np.testing.assert_allclose(stats.mean(), everything.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(stats.cov(), np.cov(everything, rowvar=False), rtol=1e-9, atol=1e-12)

  acc = fid.FidAccumulator()
  other = _gaussian_features(rng, 40, 32, 100.5)
  for k, batch in enumerate(batches):
    acc.add(batch, other[10 * k:10 * (k + 1)])
  expected = ref.calculate_frechet_distance(*ref.activation_statistics(everything), *ref.activation_statistics(other))
  assert abs(acc.result() - expected) <= 1e-6 * expected


def test_singular_product_retries_with_the_eps_offset(monkeypatch, caplog):
  rng = np.random.default_rng(5)
  stats = [*ref.activation_statistics(_gaussian_features(rng, 100, 16, 0.0)),
           *ref.activation_statistics(_gaussian_features(rng, 100, 16, 0.2))]
  sqrtm, calls = fid.linalg.sqrtm, []

  def first_fails(a):
    calls.append(a)
    return np.full_like(a, np.nan) if len(calls) == 1 else sqrtm(a)

  monkeypatch.setattr(fid.linalg, "sqrtm", first_fails)
  with caplog.at_level(logging.WARNING, logger=fid.__name__):
    got = fid.frechet_distance(*stats, eps=1e-3, method="sqrtm")
  assert len(calls) == 2 and "singular product" in caplog.text
  mu1, s1, mu2, s2 = stats
  offset = 1e-3 * np.eye(16)
  tr_covmean = np.trace(sqrtm((s1 + offset) @ (s2 + offset)).real)
  assert got == pytest.approx((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean, rel=1e-12)


def test_too_few_rows_and_bad_features_are_errors():
  acc = fid.FidAccumulator()
  with pytest.raises(UserError, match=r"needs at least 2 real feature rows, got 0"):
    acc.result()
  acc.add(np.ones((1, 8)), np.ones((5, 8)))
  with pytest.raises(UserError, match=r"needs at least 2 real feature rows, got 1"):
    acc.result()
  with pytest.raises(UserError, match=r"got 4 per row, earlier batches had 8"):
    acc.add(np.ones((3, 4)))
  with pytest.raises(UserError, match=r"expected a \(N, D\) array, got shape \(2, 8, 1\)"):
    acc.add(None, np.ones((2, 8, 1)))
  with pytest.raises(UserError, match=r"NaN or infinite"):
    acc.add(np.full((2, 8), np.nan))
  with pytest.raises(UserError, match=r"mismatched statistics"):
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_bad_weight_files_are_named(tmp_path, files):
  _, _, state = files
  with pytest.raises(UserError, match=r"nowhere\.pth: no such weight file"):
    perceptual.load_inception(str(tmp_path / "nowhere.pth"))

  def saved(name, **changes):
    changed = {k: v for k, v in state.items() if changes.get(k, 0) is not None}
    changed.update({k: v for k, v in changes.items() if v is not None})
    path = str(tmp_path / name)
    if name.endswith(".npz"):
      np.savez(path, **{k: v.numpy() for k, v in changed.items()})
    else:
      torch.save(changed, path)
    return path

  path = saved("no_branch.pth", **{"Mixed_5b.branch1x1.conv.weight": None})
  with pytest.raises(UserError, match=r"no_branch\.pth: key 'Mixed_5b\.branch1x1\.conv\.weight' missing "
                                      r"\(expected shape \(64, 192, 1, 1\)\)"):
    perceptual.load_inception(path)
  path = saved("no_bn.npz", **{"Mixed_7c.branch_pool.bn.running_var": None})
  with pytest.raises(UserError, match=r"no_bn\.npz: key 'Mixed_7c\.branch_pool\.bn\.running_var' missing"):
    perceptual.load_inception(path)
  path = saved("shape.pth", **{"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 5, 5)})
  with pytest.raises(UserError, match=r"shape\.pth: key 'Conv2d_1a_3x3\.conv\.weight' has shape \(32, 3, 5, 5\), "
                                      r"expected \(32, 3, 3, 3\)"):
    perceptual.load_inception(path)
  path = saved("variance.pth", **{"Conv2d_2a_3x3.bn.running_var": -torch.ones(32)})
  with pytest.raises(UserError, match=r"variance\.pth: key 'Conv2d_2a_3x3\.bn\.running_var' has negative variances"):
    perceptual.load_inception(path)
  torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "vgg16.pth")
  with pytest.raises(UserError, match=r"vgg16\.pth: key 'Conv2d_1a_3x3\.conv\.weight' missing .*features\.0\.weight"):
    perceptual.load_inception(str(tmp_path / "vgg16.pth"))


def test_images_must_be_nhwc_rgb(model):
  with pytest.raises(UserError, match=r"expected images of shape \(N, H, W, 3\), got \(2, 32, 32, 1\)"):
    model(np.zeros((2, 32, 32, 1), np.float32))
