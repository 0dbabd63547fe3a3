"""Raindrops on the lens or windscreen: each drop is a small out-of-focus lens.

Inside a drop the scene is seen refracted: inverted and minified around the drop centre, taken
from a blurred copy of the image (the drop is far out of the focal plane). The rim is darker (total
internal reflection at grazing angles), a specular highlight sits towards the light (upper left),
and the drop's outline is soft. Up to 40 drops; drop i appears when its random threshold is below
the intensity, so stronger settings add drops (and grow them) without moving existing ones.
"""
import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from jaxdeg.degrade._ops import Knobs, Stream, blur, finish, odd_size
from jaxdeg.degrade.registry import register

MAX_DROPS = 40


def _smoothstep(e0, e1, x):
  t = jnp.clip((x - e0) / (e1 - e0), 0.0, 1.0)
  return t * t * (3 - 2 * t)


@register("raindrop")
def raindrop(key, image, intensity, **overrides):
  """Drop count ≈ 40·intensity, radii 2–7 % of the short side times (0.6 + 0.4·intensity)."""
  kn = Knobs("raindrop", overrides, ("coverage", "scale", "refraction", "blur"))
  h, w = image.shape[:2]
  side = min(h, w)
  rs = Stream(key, 5 * MAX_DROPS)
  coverage = kn("coverage", intensity)  # fraction of the MAX_DROPS drops that appear
  scale = kn("scale", lambda: 0.6 + 0.4 * intensity)
  refraction = kn("refraction", 0.7)
  blur_sigma = kn("blur", 0.02 * side)

  centres = rs.uniform(shape=(MAX_DROPS, 2)) * jnp.asarray([h, w], jnp.float32)
  radius = rs.uniform(0.02, 0.07, (MAX_DROPS,)) * side * scale
  aspect = rs.uniform(1.0, 1.35, (MAX_DROPS,))  # gravity stretches drops downwards
  active = rs.uniform(shape=(MAX_DROPS,)) < coverage
  ry, rx = radius * aspect, radius

  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")

  def nearest(carry, drop):
    best, cy, cx, by, bx = carry
    y, x, dy, dx, on = drop
    rho = jnp.sqrt(jnp.square((yy - y) / dy) + jnp.square((xx - x) / dx))
    take = on & (rho < best)
    return (jnp.where(take, rho, best), jnp.where(take, y, cy), jnp.where(take, x, cx),
            jnp.where(take, dy, by), jnp.where(take, dx, bx)), None

  init = (jnp.full((h, w), 2.0), yy, xx, jnp.ones((h, w)), jnp.ones((h, w)))
  (rho, cy, cx, dy, dx), _ = jax.lax.scan(nearest, init, (centres[:, 0], centres[:, 1], ry, rx, active))

  # Refraction: invert and minify around the centre, looking slightly upwards (drops image the sky).
  oy, ox = yy - cy, xx - cx
  shrink = refraction * (0.6 + 0.4 * jnp.square(jnp.minimum(rho, 1.0)))
  sy = cy - oy * shrink - 0.5 * dy
  sx = cx - ox * shrink
  size = min(odd_size(3 * 0.02 * side) + 2, (side - 1) | 1)
  soft = blur(image, blur_sigma, size)
  seen = jnp.stack([map_coordinates(soft[..., c], [sy, sx], order=1, mode="nearest") for c in range(3)], -1)

  rim = 1.0 - 0.25 * _smoothstep(0.6, 1.0, rho)
  glint = jnp.exp(-0.5 * (jnp.square((oy + 0.45 * dy) / (0.12 * dy)) + jnp.square((ox + 0.35 * dx) / (0.12 * dx))))
  drop = seen * rim[..., None] + 0.3 * glint[..., None]
  alpha = (1.0 - _smoothstep(0.7, 1.0, rho))[..., None]
  out = image * (1.0 - alpha) + alpha * drop
  return finish(out), {"coverage": coverage, "scale": scale, "refraction": refraction, "blur": blur_sigma}
