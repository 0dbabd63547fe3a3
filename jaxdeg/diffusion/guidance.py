"""Classifier-free guidance as model-function transformers.

`apply_fn(x, t, cond) -> output` is the conditional model; `cond` any pytree whose leaves have the
batch as leading axis. The guided model evaluates all conditionings in ONE batched call (the batch
is repeated, the conditionings concatenated), then combines the outputs.
"""
import jax
import jax.numpy as jnp


def _batched(apply_fn, conds):
  n = len(conds)
  joint = jax.tree.map(lambda *c: jnp.concatenate(c, axis=0), *conds)

  def outs(x, t):
    t = jnp.asarray(t)
    tt = jnp.concatenate([t] * n, axis=0) if t.ndim else t
    return jnp.split(apply_fn(jnp.concatenate([x] * n, axis=0), tt, joint), n, axis=0)
  return outs


def dual(apply_fn, cond, image_only, uncond, text_scale=7.5, image_scale=1.5):
  """GenDeg / InstructPix2Pix dual guidance:
  ε = ε(∅,∅) + s_T·[ε(I,T) − ε(I,∅)] + s_I·[ε(I,∅) − ε(∅,∅)],
  with `cond` = (image, text), `image_only` = (image, null text), `uncond` = (null image, null text).
  s_T = s_I = 1 gives the plain conditional model."""
  outs = _batched(apply_fn, (cond, image_only, uncond))

  def model_fn(x, t):
    c, i, u = outs(x, t)
    return u + text_scale * (c - i) + image_scale * (i - u)
  return model_fn
