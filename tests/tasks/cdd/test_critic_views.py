"""What the critic sees under each official strategy (jaxdeg/tasks/_cdd_critic.py), against the
official tensor operations written out in torch."""
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxdeg.tasks import _cdd_critic as views  # noqa: E402


def official_patched_critic_inputs(y, y_hat, p, order):
  """The official trainer's `_augment_discriminator_input` ('patched') after its random crop, NCHW."""
  b, c = y.shape[:2]

  def pieces(a):
    a = a.unfold(-2, p, p).unfold(-1, p, p)
    return a.permute((0, 3, 5, 1, 2, 4)).reshape((b, c, 9, p, p))
  yp, fp = pieces(y), pieces(y_hat)
  key = yp[:, :, order[-1:]].expand(b, c, 8, p, p)
  real = torch.cat((key, yp[:, :, order[:8]]), dim=1).permute((0, 2, 1, 3, 4)).reshape(b * 8, 2 * c, p, p)
  fake = torch.cat((key, fp[:, :, order[:8]]), dim=1).permute((0, 2, 1, 3, 4)).reshape(b * 8, 2 * c, p, p)
  return real, fake


def test_patched_critic_inputs_are_the_official_ones_index_for_index():
  rng = np.random.default_rng(0)
  b, p = 2, 4
  y, y_hat = (rng.normal(size=(b, 3 * p, 3 * p, 3)).astype(np.float32) for _ in range(2))
  order = np.asarray(rng.permutation(9))
  ours_pieces = views._official_pieces
  real = np.asarray(views._pair_with_key(ours_pieces(y, p), ours_pieces(y, p), order))
  fake = np.asarray(views._pair_with_key(ours_pieces(y, p), ours_pieces(y_hat, p), order))
  nchw = lambda a: torch.tensor(a).permute(0, 3, 1, 2)
  real_t, fake_t = official_patched_critic_inputs(nchw(y), nchw(y_hat), p, torch.tensor(order))
  np.testing.assert_array_equal(real, real_t.permute(0, 2, 3, 1).numpy())
  np.testing.assert_array_equal(fake, fake_t.permute(0, 2, 3, 1).numpy())
  # the official pieces are a scramble of the window, not its 3×3 spatial patches
  assert not np.array_equal(np.asarray(ours_pieces(y, p))[:, 0], y[:, :p, :p])


def test_strategies_shape_and_content():
  rng = np.random.default_rng(1)
  x, y, y_hat = (rng.normal(size=(2, 32, 32, 3)).astype(np.float32) for _ in range(3))
  real, fake = views.critic_inputs("conditioned", jax.random.key(0), x, y, y_hat)
  np.testing.assert_array_equal(real, np.concatenate([x, y], -1))
  np.testing.assert_array_equal(fake, np.concatenate([x, y_hat], -1))
  real, fake = views.critic_inputs("patched", jax.random.key(0), x, y, y_hat)
  assert real.shape == fake.shape == (16, 8, 8, 6)
  np.testing.assert_array_equal(real[..., :3], fake[..., :3])  # the key piece comes from y in both
  # generator side: a key patch of y and a patch of ŷ at a place that does not overlap it
  judge = jax.jit(lambda key: views.generator_input("patched", key, x, y, y_hat))
  for seed in range(20):
    judged = np.asarray(judge(jax.random.key(seed)))
    assert judged.shape == (2, 8, 8, 6)
    where = lambda image, piece: {(i, j) for i in range(25) for j in range(25)
                                  if np.array_equal(image[:, i:i + 8, j:j + 8], piece)}
    (kt, kl), = where(y, judged[..., :3])
    (pt, pl), = where(y_hat, judged[..., 3:])
    assert abs(kt - pt) >= 8 or abs(kl - pl) >= 8
  assert views.critic_size("patched", 128) == 32 and views.in_channels("unconditioned") == 3
