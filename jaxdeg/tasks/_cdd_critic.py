"""What the universal degradation model's critic sees: the official strategies (`network.netP.strategy`
in the official trainer), NHWC, images in [-1, 1].

- unconditioned: the image alone (3 channels), at the training crop.
- conditioned: clean x ‖ image (6 channels): the critic judges the degradation given the content.
- patched: (key patch of y ‖ a patch) (6 channels) at a quarter of the crop, side p = crop // 4.
  Generator step: the key is a p×p patch of y and the judged one a p×p patch of ŷ at another,
  non-overlapping place (both positions random, one per batch). Critic step: the same 3p×3p
  window of y and ŷ is cut into nine p×p pieces, one of y's becomes the key for the other eight, so
  each image gives 8 real and 8 fake inputs (the batch grows 8×).
  The official code cuts the window with two `unfold`s whose second one unfolds the wrong axis, so
  its nine "pieces" are a fixed scramble of the window's pixels rather than spatial patches; an
  imported patched critic was trained on that scramble, so it is reproduced index for index
  (`_official_pieces`).

`critic_size(strategy, crop)` is the side the critic is built for (the official `in_width`).
"""
import jax
import jax.numpy as jnp

STRATEGIES = ("unconditioned", "conditioned", "patched")


def critic_size(strategy, crop):
  return crop // 4 if strategy == "patched" else crop


def in_channels(strategy):
  return 3 if strategy == "unconditioned" else 6


def generator_input(strategy, key, x, y, y_hat):
  """The critic's input for the generator's GAN term (−α·mean D(·))."""
  if strategy == "conditioned":
    return jnp.concatenate([x, y_hat], axis=-1)
  if strategy == "patched":
    p = y.shape[1] // 4
    k_top, k_left, p_top, p_left = _disjoint_positions(key, y.shape[1] - p, y.shape[2] - p, p)
    cut = lambda a, top, left: jax.lax.dynamic_slice_in_dim(jax.lax.dynamic_slice_in_dim(a, top, p, 1), left, p, 2)
    return jnp.concatenate([cut(y, k_top, k_left), cut(y_hat, p_top, p_left)], axis=-1)
  return y_hat


def critic_inputs(strategy, key, x, y, y_hat):
  """(real, fake) inputs of the critic step (the gradient penalty interpolates between them)."""
  if strategy == "conditioned":
    return jnp.concatenate([x, y], axis=-1), jnp.concatenate([x, y_hat], axis=-1)
  if strategy == "patched":
    k_crop, k_perm = jax.random.split(key)
    b, h, w, _ = y.shape
    p = h // 4
    top_left = jax.random.randint(k_crop, (2,), 0, jnp.array([h - 3 * p + 1, w - 3 * p + 1]))
    window = lambda a: jax.lax.dynamic_slice(a, (0, top_left[0], top_left[1], 0), (b, 3 * p, 3 * p, a.shape[-1]))
    order = jax.random.permutation(k_perm, 9)
    real, fake = _official_pieces(window(y), p), _official_pieces(window(y_hat), p)
    return _pair_with_key(real, real, order), _pair_with_key(real, fake, order)
  return y, y_hat


def _disjoint_positions(key, rows, cols, p):
  """(top, left) of the key patch, uniform, and of the judged patch, uniform among the positions
  whose p×p patch does not overlap the key's (the official draws again until they do not)."""
  k1, k2 = jax.random.split(key)
  k_top, k_left = jax.random.randint(k1, (2,), 0, jnp.array([rows, cols]))
  tops, lefts = jnp.meshgrid(jnp.arange(rows), jnp.arange(cols), indexing="ij")
  apart = (jnp.abs(tops - k_top) >= p) | (jnp.abs(lefts - k_left) >= p)
  flat = jax.random.categorical(k2, jnp.where(apart, 0.0, -jnp.inf).reshape(-1))
  return k_top, k_left, flat // cols, flat % cols


def _official_pieces(window, p):
  """[B, 3p, 3p, C] → [B, 9, p, p, C]: the official `unfold(-2, p, p).unfold(-1, p, p)`,
  `permute(0, 3, 5, 1, 2, 4)`, `reshape(b, c, 9, p, p)` on the NCHW window, index for index."""
  b, c = window.shape[0], window.shape[-1]
  a = jnp.transpose(window, (0, 3, 1, 2))                             # (b, c, 3p, 3p)
  a = jnp.moveaxis(a.reshape(b, c, 3, p, 3 * p), 3, -1)               # unfold(-2): (b, c, 3, 3p, p)
  a = a.reshape(b, c, 3, 3 * p, 1, p)                                 # unfold(-1) of the p axis
  a = jnp.transpose(a, (0, 3, 5, 1, 2, 4)).reshape(b, c, 9, p, p)
  return jnp.transpose(a, (0, 2, 3, 4, 1))                            # (b, 9, p, p, c)


def _pair_with_key(key_source, pieces, order):
  """[B·8, p, p, 2C]: the key piece order[8] of `key_source` ‖ each piece order[:8] of `pieces`."""
  b = pieces.shape[0]
  key_piece = jnp.broadcast_to(key_source[:, order[8:]], (b, 8) + key_source.shape[2:])
  pairs = jnp.concatenate([key_piece, pieces[:, order[:8]]], axis=-1)
  return pairs.reshape((b * 8,) + pairs.shape[2:])


__all__ = ["STRATEGIES", "critic_size", "in_channels", "generator_input", "critic_inputs"]
