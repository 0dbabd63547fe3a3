"""GenDeg's cross-attention context: what degradation, and how strong.

Degradation: learned type tokens (one (L, D) token sequence per type, plus a null sequence for
classifier-free guidance), the from-scratch option; or text embeddings (B, L, D) passed in: GenDeg's
are CLIP ViT-L/14's last hidden state of `gendeg_prompt(type, caption)`, the null text CLIP("")
(`jaxdeg.text.encode`).
Intensity: μ and σ one-hots (129-way, index 128 = null; see `jaxdeg.degrade.intensity`), each
through Linear(129 → L), giving (B, L, 2); concatenated to the context (B, L, D) and mapped back by
Linear(D + 2 → D), initialised as the identity on the first D inputs with zero bias, so at
initialisation the context passes through unchanged apart from the two intensity columns.
Linear(129 → L) starts as torch's Linear default ('torch': weight and bias U(±1/√129), as GenDeg's
nn.Linear(129, 77)), flax's default ('default': lecun-normal weight, zero bias), or 'ordinal': every
bin's row is the bin's position on a ramp from −1 to 1 (null bin 0), so neighbouring intensities
start with neighbouring embeddings and a short training run can interpolate between bins it has
rarely seen instead of learning 128 unrelated rows.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdeg.degrade import intensity
from jaxdeg.models import layers

DEGRADATION_TYPES = ("haze", "rain", "snow", "motion_blur", "low_light", "raindrop", "snow+haze", "rain+haze")
# GenDeg's prompt for a type: an image caption (BLIP-2's, in train_csv.json) whose last comma-separated
# part is replaced by the type's text. The six single types: the `replace_text` table of
# EditDatasetParallelMuSigma / EditDatasetSingle in GenDeg's edit_dataset.py (deg_type 'motion' and
# 'low-light' there). The mixtures: EditDataset.__getitem__ rewrites CSD's 'in snowy conditions' to
# 'in snowy and hazy conditions' and ORD's 'in rainy conditions' to 'in rainy and hazy conditions'.
PROMPT_SUFFIXES = {"haze": " in hazy conditions", "rain": " in rainy conditions", "snow": " in snowy conditions",
                   "motion_blur": " in blurry conditions", "low_light": " in low-light conditions",
                   "raindrop": " with raindrops in it", "snow+haze": " in snowy and hazy conditions",
                   "rain+haze": " in rainy and hazy conditions"}


def gendeg_prompt(type_name, caption=""):
  """GenDeg's text prompt '<caption>, in hazy conditions'; without a caption the type's text alone,
  'in hazy conditions' (jaxdeg's choice: GenDeg always has a caption). '' or None → '' (null text)."""
  if type_name in (None, "", "null"):
    return ""
  if type_name not in PROMPT_SUFFIXES:
    raise ValueError(f"unknown degradation type {type_name!r}; known: {', '.join(PROMPT_SUFFIXES)}")
  caption = (caption or "").strip()
  return f"{caption},{PROMPT_SUFFIXES[type_name]}" if caption else PROMPT_SUFFIXES[type_name].strip()


def type_index(name, types=DEGRADATION_TYPES):
  """Token index of a degradation type name; '' or None → the null token."""
  if name in (None, "", "null"):
    return len(types)
  if name not in types:
    raise ValueError(f"unknown degradation type {name!r}; known: {', '.join(types)}")
  return types.index(name)


def _identity_then(extra_init):
  """Kernel init (D + k, D): identity on the first D rows, `extra_init` on the last k."""
  def init(key, shape, dtype=jnp.float32):
    d_in, d_out = shape
    eye = jnp.eye(d_out, dtype=dtype)
    return jnp.concatenate([eye, extra_init(key, (d_in - d_out, d_out), dtype)], axis=0)
  return init


def _ordinal_rows(key, shape, dtype=jnp.float32):
  """(129, L) kernel: row i = the ramp value of bin i in [−1, 1] in every column; the null row 0."""
  del key
  bins, width = shape
  ramp = jnp.linspace(-1.0, 1.0, bins - 1, dtype=dtype)
  return jnp.broadcast_to(jnp.concatenate([ramp, jnp.zeros((1,), dtype)])[:, None], (bins, width))


STATS_PROJ_INITS = ("torch", "default", "ordinal")


def _torch_linear_uniform(fan_in):
  """torch.nn.Linear's default init of weight and bias, U(±1/√fan_in) (kaiming_uniform with a = √5
  gives the same bound): what GenDeg's new layers start at."""
  bound = 1.0 / fan_in ** 0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class DegradationContext(nn.Module):
  """(stats one-hots (B, 2, 129), type ids (B,) or text embeddings (B, L, D)) → context (B, L, D).

  `stats_columns_init`: 'uniform' starts the two intensity columns of the projection as torch's
  Linear default (as GenDeg); 'zeros' makes the projection exactly the identity at init.
  `stats_proj_init`: 'torch' (GenDeg's), 'default' (flax's) or 'ordinal' (see the module doc).
  """
  context_len: int = 77
  context_dim: int = 768
  types: Sequence[str] = DEGRADATION_TYPES
  stats_columns_init: str = "uniform"
  stats_proj_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, stats, type_ids=None, text=None):
    if (type_ids is None) == (text is None):
      raise ValueError("DegradationContext: pass exactly one of type_ids and text")
    if stats.shape[-2:] != (2, intensity.ONE_HOT_SIZE):
      raise ValueError(f"DegradationContext: stats must be (B, 2, {intensity.ONE_HOT_SIZE}) one-hots, got {stats.shape}")
    L, D = self.context_len, self.context_dim
    if text is None:
      table = layers.param(self, "type_tokens", nn.initializers.normal(0.02), (len(self.types) + 1, L, D),
                           (None, None, "out"))
      context = jnp.take(table, jnp.asarray(type_ids, jnp.int32), axis=0)
    else:
      if text.shape[-2:] != (L, D):
        raise ValueError(f"DegradationContext: text embeddings must be (B, {L}, {D}), got {text.shape}")
      context = text
    if self.stats_columns_init not in ("uniform", "zeros"):
      raise ValueError(f"DegradationContext: stats_columns_init must be 'uniform' or 'zeros', "
                       f"got {self.stats_columns_init!r}")
    if self.stats_proj_init not in STATS_PROJ_INITS:
      raise ValueError(f"DegradationContext: stats_proj_init must be one of {', '.join(STATS_PROJ_INITS)}, "
                       f"got {self.stats_proj_init!r}")
    torch_default = _torch_linear_uniform(intensity.ONE_HOT_SIZE)
    proj_init = {"torch": {"kernel_init": torch_default, "bias_init": torch_default},
                 "ordinal": {"kernel_init": _ordinal_rows}, "default": {}}[self.stats_proj_init]
    s = layers.Dense(L, dtype=self.dtype, name="stats_proj", **proj_init)(stats.astype(self.dtype))  # (B, 2, L)
    x = jnp.concatenate([context.astype(self.dtype), jnp.swapaxes(s, -1, -2)], axis=-1)  # (B, L, D + 2)
    extra = _torch_linear_uniform(D + 2) if self.stats_columns_init == "uniform" else nn.initializers.zeros_init()
    return layers.Dense(D, kernel_init=_identity_then(extra), dtype=self.dtype, name="cc_projection")(x)


def null_inputs(batch, types=DEGRADATION_TYPES):
  """(null stats one-hots, null type ids) for the unconditional branch of guidance."""
  return intensity.null_stats((batch,)), jnp.full((batch,), len(types), jnp.int32)


def dropout_masks(key, batch, p=0.05):
  """GenDeg's condition dropout, one draw r ~ U(0, 1) per example:
  r < p drops text and μσ; p ≤ r < 2p drops text, μσ and image; 2p ≤ r < 3p drops the image only.
  Returns (drop_text_and_stats, drop_image) boolean (B,) masks."""
  r = jax.random.uniform(key, (batch,))
  return r < 2 * p, (r >= p) & (r < 3 * p)
