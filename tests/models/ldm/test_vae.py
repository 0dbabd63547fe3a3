"""AutoencoderKL vs diffusers: encode (mean, logvar) and decode; legacy attention key names."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg.interop import diffusers as imp
from jaxdeg.models.ldm.vae import AutoencoderKL, kl_divergence, sample_posterior
from tests.models.ldm.torch_ref import nchw, nhwc, torch_vae

import torch  # noqa: E402  (test dependency, pinned in pyproject)
import diffusers  # noqa: E402,F401


@pytest.fixture(scope="module")
def ref():
  tv = torch_vae()
  model = AutoencoderKL(**imp.vae_kwargs(dict(tv.config)))
  rng = np.random.default_rng(0)
  img = rng.uniform(-1, 1, (2, 16, 24, 3)).astype(np.float32)
  z = rng.normal(size=(2, 8, 12, 4)).astype(np.float32)
  target = jax.eval_shape(model.init, jax.random.key(0), img)
  params = imp.vae_params(tv.state_dict(), target)

  @jax.jit
  def run(params, img, z):  # one compile for encode and decode
    v = {"params": params}
    return model.apply(v, img, method=model.encode), model.apply(v, z, method=model.decode)

  (mean, logvar), dec = run(params, img, z)
  with torch.no_grad():
    dist = tv.encode(nchw(img)).latent_dist
    tdec = tv.decode(nchw(z)).sample
  return dict(tv=tv, model=model, target=target, params=params, img=img, mean=mean, logvar=logvar, dec=dec,
              t_mean=nhwc(dist.mean), t_logvar=nhwc(dist.logvar), t_dec=nhwc(tdec))


def test_encode_matches_diffusers(ref):
  assert ref["mean"].shape == (2, 8, 12, 4)
  for ours, theirs in [(ref["mean"], ref["t_mean"]), (ref["logvar"], ref["t_logvar"])]:
    d = float(np.abs(np.asarray(ours) - theirs).max())
    assert d < 1e-4, d


def test_decode_matches_diffusers(ref):
  assert ref["dec"].shape == (2, 16, 24, 3)
  d = float(np.abs(np.asarray(ref["dec"]) - ref["t_dec"]).max())
  assert d < 1e-4, d


def test_legacy_attention_names_and_conv_weights(ref):
  # older SD VAE files: query/key/value/proj_attn, stored as 1×1 convs
  legacy = {}
  for k, v in ref["tv"].state_dict().items():
    for new, old in [("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")]:
      if f"attentions.0.{new}." in k:
        k = k.replace(new, old)
        v = v[:, :, None, None] if v.ndim == 2 else v
    legacy[k] = v
  jax.tree.map(np.testing.assert_array_equal, imp.vae_params(legacy, ref["target"]), ref["params"])


def test_sample_scale_and_kl(ref):
  model, v = ref["model"], {"params": ref["params"]}
  shape = jax.eval_shape(lambda: model.apply(v, ref["img"], jax.random.key(0), method=model.sample))
  assert shape.shape == ref["mean"].shape
  z = sample_posterior(ref["mean"], ref["logvar"], jax.random.key(0))
  std = (z - ref["mean"]) / jnp.exp(0.5 * ref["logvar"])
  assert abs(float(std.std()) - 1) < 0.2
  assert model.downsample_factor == 2 and model.scaling_factor == 0.18215
  np.testing.assert_allclose(model.unscale(model.scale(z)), z, rtol=1e-6)
  kl = kl_divergence(jnp.zeros((2, 3, 3, 4)), jnp.zeros((2, 3, 3, 4)))
  np.testing.assert_allclose(kl, 0.0)
  with pytest.raises(ValueError, match="multiples of 2"):
    model.apply(v, jnp.zeros((1, 15, 16, 3)), method=model.encode)


def test_sd_vae_param_count_and_remat(ref):
  # SD's VAE (diffusers AutoencoderKL, sd-vae-ft-mse) has 83,653,863 parameters
  m = AutoencoderKL()
  v = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  assert sum(x.size for x in jax.tree.leaves(nn.unbox(v))) == 83_653_863
  # with gradient checkpointing the same parameters train (the blocks get no time embedding)
  m = ref["model"].clone(remat=True, dtype=jnp.bfloat16)
  grads = jax.eval_shape(jax.grad(lambda p: m.apply({"params": p}, ref["img"])[0].mean()), ref["params"])
  assert jax.tree.structure(grads) == jax.tree.structure(ref["params"])
