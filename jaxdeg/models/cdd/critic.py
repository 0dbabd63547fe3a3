"""WGAN-GP critic (the official `DiscriminatorLinear`), NHWC.

Five conv stages double the width each time (width, 2w, 4w, 8w, 16w), each followed by
LeakyReLU(0.2): 4×4 stride-2 convs, except that the first three become stride-1 3×3 convs when
the input is already small (below 128, 64, 32 pixels respectively), so inputs of 32, 64 or 128
pixels all reach 4×4; then a 4×4 valid conv to 32·width channels and a linear layer → one score per image.
No normalisation (WGAN-GP's gradient penalty forbids batch coupling); no biases in the convs.
Inputs have 3 channels (the image) or 6 (with a condition: the official critic strategies, whose
inputs jaxdeg/tasks/_cdd_critic.py makes).
At width 64 it has 44.7 M parameters, most in the last two convs (16w → 32w at 4×4).
"""
import flax.linen as nn

from jaxdeg.errors import UserError
from jaxdeg.models import layers
from jaxdeg.models.cdd.ops import torch_padding

# the official initialisation: N(0, 0.02) weights, zero biases
_init = nn.initializers.normal(0.02)


class Critic(nn.Module):
  """Image [B, H, W, C] → score [B]. The paper does not give its width: 64 is the official
  code's default and a guess for the released models."""
  width: int = 64
  slope: float = 0.2

  @nn.compact
  def __call__(self, x):
    size = x.shape[1]
    if x.shape[1] != x.shape[2]:
      raise UserError(f"critic: input must be square, got {x.shape[1]}×{x.shape[2]}")
    act = lambda t: nn.leaky_relu(t, self.slope)
    for i in range(5):
      downsample = i >= 3 or size >= 128 // 2 ** i
      k, s = (4, 2) if downsample else (3, 1)
      x = act(layers.Conv(self.width * 2 ** i, (k, k), strides=(s, s), padding=torch_padding(1), use_bias=False,
                          kernel_init=_init, name=f"conv{i}")(x))
    if x.shape[1:3] != (4, 4):
      raise UserError(f"critic: a {size}×{size} input reaches {x.shape[1]}×{x.shape[2]} before the last conv, "
                      f"which needs 4×4 (use inputs of 32, 64 or 128 pixels)")
    x = act(layers.Conv(self.width * 32, (4, 4), padding="VALID", use_bias=False, kernel_init=_init,
                        name="conv_final")(x))
    return layers.Dense(1, kernel_init=_init, name="score")(x.reshape(x.shape[0], -1))[:, 0]


__all__ = ["Critic"]
