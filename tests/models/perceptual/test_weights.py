"""Weight files: the official key names and shapes, .npz copies, and clear errors for bad files
(naming the file, the key and the expected shape), also from the tasks' configs."""
import sys

import numpy as np
import pytest
import torch

from jaxdeg.errors import ConfigError, UserError
from jaxdeg.models import perceptual
from jaxdeg.models.perceptual import weights
from jaxdeg.tasks import vae
from tests.utils import load_config


def test_torch_layouts_become_flax_params(tmp_path):
  kernel = torch.randn(64, 3, 3, 3)
  state = {f"features.{i}.weight": torch.zeros(o, c, 3, 3) for i, c, o in weights.VGG16_CONVS}
  state.update({f"features.{i}.bias": torch.full((o,), float(i)) for i, _, o in weights.VGG16_CONVS})
  state["features.0.weight"] = kernel
  state["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision vgg16 also has the classifier
  torch.save(state, tmp_path / "vgg16.pth")
  params = weights.vgg16_params(str(tmp_path / "vgg16.pth"))
  assert sorted(params) == sorted(f"features_{i}" for i, _, _ in weights.VGG16_CONVS)
  # OIHW -> HWIO: flax's kernel[h, w, i, o] is torch's weight[o, i, h, w]
  np.testing.assert_array_equal(params["features_0"]["kernel"], kernel.numpy().transpose(2, 3, 1, 0))
  assert params["features_28"]["kernel"].shape == (3, 3, 512, 512)
  assert np.all(params["features_28"]["bias"] == 28.0)


def _save(path, state):
  torch.save({k: torch.as_tensor(v) for k, v in state.items()}, path)
  return str(path)


def test_missing_file_and_missing_key_are_named(tmp_path):
  with pytest.raises(UserError, match=r"nowhere\.pth: no such weight file"):
    weights.vgg16_params(str(tmp_path / "nowhere.pth"))
  path = _save(tmp_path / "vgg16.pth", {"features.0.weight": np.zeros((64, 3, 3, 3), np.float32)})
  with pytest.raises(UserError, match=r"vgg16\.pth: key 'features\.0\.bias' missing \(expected shape \(64,\)\)"):
    weights.vgg16_params(path)
  path = _save(tmp_path / "weights.pt", {"alpha": np.zeros((1, 1475, 1, 1), np.float32)})
  with pytest.raises(UserError, match=r"weights\.pt: key 'beta' missing \(expected shape \(1, 1475, 1, 1\)\)"):
    weights.dists_alpha_beta(path)


def test_wrong_shapes_and_negative_heads_are_named(tmp_path):
  path = _save(tmp_path / "vgg16.pth", {"features.0.weight": np.zeros((64, 3, 5, 5), np.float32)})
  with pytest.raises(UserError, match=r"'features\.0\.weight' has shape \(64, 3, 5, 5\), expected \(64, 3, 3, 3\)"):
    weights.vgg16_params(path)
  heads = {f"lin{k}.model.1.weight": np.ones((1, c, 1, 1), np.float32) for k, c in enumerate(weights.LPIPS_CHANNELS)}
  heads["lin2.model.1.weight"] = heads["lin2.model.1.weight"][:, :128]
  with pytest.raises(UserError, match=r"'lin2\.model\.1\.weight' has shape \(1, 128, 1, 1\), expected \(1, 256, 1, 1\)"):
    weights.lpips_linear_weights(_save(tmp_path / "lin.pth", heads))
  heads["lin2.model.1.weight"] = -np.ones((1, 256, 1, 1), np.float32)
  with pytest.raises(UserError, match=r"'lin2\.model\.1\.weight' has negative weights"):
    weights.lpips_linear_weights(_save(tmp_path / "lin.pth", heads))


def test_unreadable_files_are_named(tmp_path):
  (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
  with pytest.raises(UserError, match=r"broken\.pth: cannot read as a torch state dict"):
    weights.read_state_dict(str(tmp_path / "broken.pth"))
  (tmp_path / "broken.npz").write_bytes(b"not an archive")
  with pytest.raises(UserError, match=r"broken\.npz: cannot read as \.npz"):
    weights.read_state_dict(str(tmp_path / "broken.npz"))
  torch.save([torch.zeros(1)], tmp_path / "list.pth")
  with pytest.raises(UserError, match=r"list\.pth: holds a list, not a state dict"):
    weights.read_state_dict(str(tmp_path / "list.pth"))


def test_npz_needs_no_torch_and_pth_without_torch_says_how_to_convert(tmp_path, monkeypatch):
  alpha_beta = {k: np.full((1, 1475, 1, 1), 0.5, np.float32) for k in ("alpha", "beta")}
  pth = _save(tmp_path / "weights.pt", alpha_beta)
  weights.to_npz(pth, str(tmp_path / "weights.npz"))
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails, as without torch
  alpha, beta = weights.dists_alpha_beta(str(tmp_path / "weights.npz"))
  assert alpha.shape == beta.shape == (1475,) and np.all(alpha == 0.5)
  with pytest.raises(UserError, match=r"weights\.pt: reading a torch weight file needs torch installed; .*\.npz"):
    weights.dists_alpha_beta(pth)


def test_task_configs_name_the_field(tmp_path):
  config = load_config("configs/gendeg_vae.py:tiny", loss__lpips_weights=str(tmp_path / "vgg.pth"))
  with pytest.raises(ConfigError, match=r"config\.loss\.lpips_weights set but config\.loss\.vgg16_weights is not"):
    vae.VaeTask(config)
  config.loss.vgg16_weights = str(tmp_path / "vgg16.pth")
  with pytest.raises(ConfigError, match=r"config\.loss\.vgg16_weights: .*vgg16\.pth: no such weight file"):
    vae.VaeTask(config)
  config.loss.lpips_weight = 0.0  # the term is off: no file is read
  assert vae.VaeTask(config).lpips is None


def test_the_distances_reject_a_wrong_file_kind(tmp_path):
  alpha_beta = _save(tmp_path / "weights.pt", {k: np.ones((1, 1475, 1, 1), np.float32) for k in ("alpha", "beta")})
  with pytest.raises(UserError, match=r"weights\.pt: key 'features\.0\.weight' missing"):
    perceptual.load_dists(alpha_beta, alpha_beta)
