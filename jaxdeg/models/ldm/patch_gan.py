"""The patch-GAN discriminator of Stable Diffusion's first stage (taming-transformers'
NLayerDiscriminator, pix2pix's PatchGAN), and its hinge losses.

Conv 4×4 s2 (→ width) · LeakyReLU(0.2); `num_layers − 1` × [Conv 4×4 s2 (no bias) · BatchNorm ·
LeakyReLU], widths doubling up to 8×; Conv 4×4 s1 (no bias) · BatchNorm · LeakyReLU; Conv 4×4 s1
(→ 1 logit per patch). All padding 1; conv weights N(0, 0.02), BatchNorm scales N(1, 0.02) as
taming's `weights_init`. Width 64 with 3 layers has 2,765,633 parameters. BatchNorm always uses the
batch's statistics (taming's discriminator only ever runs in training mode); its running averages
are kept in 'batch_stats' but never read.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

_CONV_INIT = nn.initializers.normal(0.02)


def _bn_scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class PatchDiscriminator(nn.Module):
  width: int = 64
  num_layers: int = 3

  @nn.compact
  def __call__(self, x):
    """Images (B, H, W, 3) in [-1, 1] -> patch logits (B, H', W', 1)."""
    pad = ((1, 1), (1, 1))
    conv = lambda ch, stride, bias: nn.Conv(ch, (4, 4), strides=stride, padding=pad, use_bias=bias,
                                            kernel_init=_CONV_INIT)
    norm = lambda: nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5, scale_init=_bn_scale_init)
    h = nn.leaky_relu(conv(self.width, 2, True)(x), 0.2)
    for n in range(1, self.num_layers):
      h = nn.leaky_relu(norm()(conv(self.width * min(2 ** n, 8), 2, False)(h)), 0.2)
    h = nn.leaky_relu(norm()(conv(self.width * min(2 ** self.num_layers, 8), 1, False)(h)), 0.2)
    return conv(1, 1, True)(h)


def hinge_discriminator_loss(logits_real, logits_fake):
  """taming's hinge_d_loss: ½ (mean relu(1 − D(x)) + mean relu(1 + D(x̂)))."""
  return 0.5 * (jnp.mean(nn.relu(1.0 - logits_real)) + jnp.mean(nn.relu(1.0 + logits_fake)))


def generator_loss(logits_fake):
  return -jnp.mean(logits_fake)


def adaptive_weight(nll_grad_last, gan_grad_last, scale):
  """taming's calculate_adaptive_weight: ‖∇_last nll‖ / (‖∇_last g‖ + 1e-4), clipped to [0, 1e4], × scale;
  `last` is the decoder's output conv kernel."""
  ratio = jnp.linalg.norm(nll_grad_last) / (jnp.linalg.norm(gan_grad_last) + 1e-4)
  return jnp.clip(ratio, 0.0, 1e4) * scale
