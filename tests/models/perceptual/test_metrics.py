"""LPIPS and DISTS in JAX against an independent PyTorch reference written from the official code
(benchmarks/peers/torch_perceptual.py), at random weights in the official file layouts (fp32,
64² images, batch 2), and their behaviour as losses."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from benchmarks.peers import torch_perceptual as ref
from jaxdeg.models import perceptual
from tests.models.perceptual.files import write_random_weights

TOLERANCE = 1e-5  # fp32; measured differences are below 1e-7


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  return write_random_weights(str(tmp_path_factory.mktemp("perceptual_weights")))


@pytest.fixture(scope="module")
def metrics(files):
  paths, _ = files
  return {"lpips": perceptual.load_lpips(paths["vgg16"], paths["lpips"]),
          "dists": perceptual.load_dists(paths["vgg16"], paths["dists"])}


@pytest.fixture(scope="module")
def images():
  """(clean, noisy) pairs, (2, 64, 64, 3) in [0, 1]: a smooth image and random texture."""
  rng = np.random.default_rng(0)
  ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32)
  smooth = np.stack([np.add.outer(ramp, ramp) / 2, np.outer(ramp, 1 - ramp), np.full((64, 64), 0.3)], -1)
  clean = np.stack([smooth, rng.random((64, 64, 3))]).astype(np.float32)
  noisy = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
  return clean, noisy


def _to_torch(images):
  return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def torch_reference(name, states, x, y):
  with torch.no_grad():
    if name == "lpips":
      model = ref.LPIPS().load_official(states["vgg16"], states["lpips"])
      return model(_to_torch(x), _to_torch(y), normalize=True).flatten().numpy()
    return ref.DISTS().load_official(states["vgg16"], states["dists"])(_to_torch(x), _to_torch(y)).numpy()


@pytest.mark.parametrize("name", ["lpips", "dists"])
def test_matches_the_torch_reference(name, files, metrics, images):
  _, states = files
  x, y = images
  expected = torch_reference(name, states, x, y)
  got = np.asarray(metrics[name](x, y))
  diff = float(np.max(np.abs(got - expected)))
  print(f"{name}: jax {got}, torch {expected}, max abs diff {diff:.2e}")
  assert got.shape == (2,) and np.all(expected > 1e-3)  # non-trivial values
  assert diff <= TOLERANCE


def test_npz_copies_load_the_same_params(tmp_path, files, metrics):
  paths, _ = write_random_weights(str(tmp_path), npz=True)
  assert all(p.endswith(".npz") for p in paths.values())
  from_npz = {"lpips": perceptual.load_lpips(paths["vgg16"], paths["lpips"]),
              "dists": perceptual.load_dists(paths["vgg16"], paths["dists"])}
  for name in ("lpips", "dists"):
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), from_npz[name].params, metrics[name].params)
    assert all(jax.tree.leaves(same)), name


@pytest.mark.parametrize("name", ["lpips", "dists"])
def test_identical_images_give_zero(name, metrics, images):
  x, _ = images
  assert np.max(np.abs(np.asarray(metrics[name](x, x)))) < 1e-6


@pytest.mark.parametrize("name", ["lpips", "dists"])
def test_distance_grows_with_noise_strength(name, metrics, images):
  x, _ = images
  noise = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
  values = [np.asarray(metrics[name](x, np.clip(x + s * noise, 0, 1))) for s in (0.03, 0.1, 0.3)]
  print(name, [v.round(4).tolist() for v in values])
  assert np.all(values[0] > 0) and np.all(values[1] > values[0]) and np.all(values[2] > values[1])


@pytest.mark.parametrize("name", ["lpips", "dists"])
def test_gradients_are_finite_also_on_flat_images(name, metrics, images):
  x, y = images
  # a flat black image gives all-zero ReLU features at many pixels
  prediction = jnp.asarray(np.stack([np.zeros_like(x[0]), y[1]]))
  distance = metrics[name]
  grads = jax.jit(jax.grad(lambda p: jnp.sum(distance(p, x))))(prediction)
  assert np.all(np.isfinite(np.asarray(grads)))
  assert float(jnp.max(jnp.abs(grads))) > 0
