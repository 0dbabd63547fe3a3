"""The VAE's optional patch-GAN: the discriminator's layout and size (taming's NLayerDiscriminator),
its hinge losses, and the VAE step with it: before `gan_start` exactly the plain step; after, the
adaptive weight is ‖∇nll‖ / ‖∇g‖ at the decoder's output conv, recomputed here independently."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdeg import tasks
from jaxdeg.errors import ConfigError
from jaxdeg.models.ldm import patch_gan
from jaxdeg.train import partitioning
from tests.tasks.gendeg.conftest import vae_config
from tests.utils import max_abs_diff


def test_discriminator_size_and_patch_grid():
  d = patch_gan.PatchDiscriminator()
  v = jax.eval_shape(d.init, jax.random.key(0), jnp.zeros((2, 256, 256, 3)))
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(v["params"])))
  assert count == 2_765_633  # taming-transformers' NLayerDiscriminator(3, 64, 3)
  logits, _ = jax.eval_shape(lambda v: d.apply(v, jnp.zeros((2, 256, 256, 3)), mutable=["batch_stats"]), v)
  assert logits.shape == (2, 30, 30, 1)  # pix2pix's 70×70 patches on 256²


def test_hinge_losses():
  real, fake = jnp.array([2.0, 0.5]), jnp.array([-3.0, 0.0])
  # relu(1 − real) = [0, 0.5], relu(1 + fake) = [0, 1]
  assert float(patch_gan.hinge_discriminator_loss(real, fake)) == pytest.approx(0.5 * (0.25 + 0.5))
  assert float(patch_gan.generator_loss(fake)) == pytest.approx(1.5)
  assert float(patch_gan.adaptive_weight(jnp.full((4,), 3.0), jnp.full((4,), 1.5), 0.5)) == pytest.approx(1.0, 1e-4)


@pytest.fixture(scope="module")
def steps():
  """(GAN task, its state before the start, the same state at the start, batch, one step of each and
  of the plain task from both states). The GAN joins by comparing the state's step with gan_start
  inside the step, so one compiled step serves both sides."""
  plain = tasks.get(vae_config())
  gan = tasks.get(vae_config(loss__gan_weight=0.5, loss__gan_start=10, loss__gan_width=8))
  before = partitioning.unbox(jax.jit(gan.init_state)(jax.random.PRNGKey(0)))
  after = before.replace(step=jnp.full_like(before.step, 10))
  batch = next(iter(plain.train_data()))
  plain_step, gan_step = jax.jit(plain.train_step), jax.jit(gan.train_step)
  out = {"plain": plain_step(before.replace(model_state={}), batch), "before": gan_step(before, batch),
         "plain_after": plain_step(after.replace(model_state={}), batch), "after": gan_step(after, batch)}
  return gan, before, after, batch, out


def test_before_the_start_the_gan_changes_nothing(steps):
  _, state, _, _, out = steps
  (plain, m_plain), (before, m_before) = out["plain"], out["before"]
  assert max_abs_diff(plain.params, before.params) <= 1e-6
  assert float(m_before["gan_adaptive_weight"]) == 0.0
  assert abs(float(m_plain["loss"]) - float(m_before["loss"])) <= 1e-5 * abs(float(m_plain["loss"]))
  d0, d1 = state.model_state["discriminator"]["params"], before.model_state["discriminator"]["params"]
  assert max_abs_diff(d0, d1) == 0.0  # a zero loss: Adam leaves it where it was


def test_after_the_start_the_weight_is_the_gradient_ratio(steps):
  task, _, state, batch, out = steps
  new, metrics = out["after"]
  assert max_abs_diff(new.params, out["plain_after"][0].params) > 1e-7
  d = state.model_state["discriminator"]
  assert max_abs_diff(new.model_state["discriminator"]["params"], d["params"]) > 0
  k_pair, k_post = jax.random.split(state.step_rng())
  clean, degraded, _ = task.pairs.train_pairs(k_pair, batch)
  x = jnp.concatenate([clean, degraded]) * 2 - 1

  def last_grad(loss):
    return jax.grad(lambda p: loss(task.forward(p, x, k_post)))(state.params)["decoder"]["conv_out"]["kernel"]
  # one compiled program for both gradients (op-by-op they take ~20 s on CPU)
  g_nll, g_gan = jax.jit(lambda: (last_grad(lambda out: task.reconstruction_loss(*out, x)[0]),
                                  last_grad(lambda out: patch_gan.generator_loss(task._discriminate(d, out[0])[0]))))()
  want = 0.5 * float(jnp.linalg.norm(g_nll)) / (float(jnp.linalg.norm(g_gan)) + 1e-4)
  assert float(metrics["gan_adaptive_weight"]) == pytest.approx(want, rel=1e-3)
  for k in ("gan_generator", "gan_discriminator", "logits_real", "logits_fake"):
    assert np.isfinite(float(metrics[k])), k


def test_negative_gan_weight_is_a_clear_error():
  with pytest.raises(ConfigError, match="gan_weight"):
    tasks.get(vae_config(loss__gan_weight=-1.0))
