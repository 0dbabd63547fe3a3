"""`jaxdeg gendeg`: GenDeg's released generator on one image, as the official `run_single.py`.

  jaxdeg gendeg --weights gendeg.ckpt --trust-pickle --type haze --mu 0.3 --sigma 0.1 clean.png out.png
  jaxdeg gendeg --weights gendeg.ckpt --trust-pickle --type haze --histograms GenDeg/data \\
      --structure nafnet_sd.ckpt --samples 4 --seed 0 clean.png out.png

What it does, step for step as run_single.py: the image resized to resolution² (Lanczos), in
[-1, 1]; its VAE posterior mean (unscaled) is the image condition; the context is cc_projection(
CLIP(prompt) ‖ stats_proj(μ, σ one-hots)ᵀ), the null context CLIP("") with the null μσ bin; Euler-
ancestral sampling (k-diffusion's: σ from log-σ interpolation at linspace(999, 0, steps)) with
GenDeg's dual guidance ε(∅,∅) + s_T·[ε(I,T) − ε(I,∅)] + s_I·[ε(I,∅) − ε(∅,∅)], the UNet's EMA
weights; decode, clamp to [-1, 1]; the structure corrector (`--structure`) on haze and motion blur
(run_single's --auto_s) or every type (`--correct all`, its --s); (x + 1)/2 to 8 bits, truncated.
μ/σ without --mu/--sigma: drawn as the official script draws them from the per-dataset histograms
in GenDeg's data/ folder (`--histograms`). The prompt: `--prompt` as given, else
'<caption>, in hazy conditions' (GenDeg's form; `--caption`).
"""
import os
import sys

import numpy as np

from jaxdeg.errors import UserError

ALIASES = {"motion": "motion_blur", "low-light": "low_light", "motion-blur": "motion_blur"}
# run_single.py --auto_s corrects 'haze' and 'motion' (its list's 'raindrops' never matches a type)
AUTO_CORRECTED = ("haze", "motion_blur")
MU_MAX, SIGMA_MAX, BINS = 0.7, 0.4, 128


def official_bin(value, top):
  """GenDeg's bin of a μ or σ value: np.digitize on its 129 edges, the top bin for values above."""
  return min(int(np.digitize(value, np.linspace(0.0, top, BINS + 1), right=False)) - 1, BINS - 1)


def load_histograms(root):
  """GenDeg's data/ folder, read by the synthesis plan's reader."""
  from jaxdeg.synth import official_histograms
  return official_histograms.load_official(root, field="--histograms")


def draw_mu_sigma(hist, type_name, rng):
  """(μ, σ, dataset) as run_single.py's get_mu_sigma draws them: a dataset by GenDeg's weights, μ from
  its μ histogram, σ from the σ row of that μ bin, each uniform in its bin (the plan's sampler)."""
  from jaxdeg.synth import plan
  from jaxdeg.synth import run as synth_run
  names, p = plan.source_table(hist, type_name, synth_run.OFFICIAL_SOURCE_WEIGHTS)
  source = names[int(rng.choice(len(names), p=p))]
  mu, sigma = hist.sample(source, rng)
  return float(mu), float(sigma), source.split("/", 1)[1]


# ------------------------------------------------------------------------------------------------
# the model


def prompt_encoder(weights, vocabulary=None):
  """Prompts → CLIP embeddings with the checkpoint's own text encoder: the one place this command
  meets the text encoder (jaxdeg.text)."""
  from jaxdeg.interop import clip_text
  from jaxdeg.models.text import CLIPTextTransformer
  from jaxdeg.text.encode import PromptEncoder, load_tokenizer
  if not weights.text:
    raise UserError(f"{weights.path}: no CLIP text encoder in the file (cond_stage_model.transformer.*)")
  model = CLIPTextTransformer(**clip_text.kwargs_from_state_dict(weights.text))
  tokenizer = load_tokenizer(None, vocabulary, max_length=weights.context["stats_proj"]["kernel"].shape[1])
  return PromptEncoder(model, clip_text.text_encoder_params(weights.text, model), tokenizer)


class GenDeg:
  """GenDeg's generator (and optionally the structure corrector), one jitted function:

      images = gendeg(clean, text, null_text, mu_bins, sigma_bins, noise, step_noise, correct=False)

  clean (B, H, W, 3) in [0, 1] (H, W multiples of the VAE's factor); text (B, L, D) CLIP
  embeddings, null_text (L, D); mu_bins, sigma_bins (B,) int32 in [0, 128]; noise (B, h, w, 4) the
  initial standard-normal latent and step_noise (steps, B, h, w, 4) each step's (`noises` draws
  both, one key per example). Returns (B, H, W, 3) in [0, 1], unquantised.
  """

  def __init__(self, weights, steps=100, text_scale=7.5, image_scale=1.5, corrector=None, dtype=None):
    import jax
    import jax.numpy as jnp
    from jaxdeg import diffusion
    from jaxdeg.models.ldm import DegradationContext
    if weights.context is None:
      raise UserError(f"{weights.path}: no stats_proj/cc_projection in the file: not a GenDeg checkpoint "
                      f"(a Stable Diffusion one?)")
    self.weights, self.steps = weights, int(steps)
    self.text_scale, self.image_scale = float(text_scale), float(image_scale)
    length = weights.context["stats_proj"]["kernel"].shape[1]
    width = weights.context["cc_projection"]["kernel"].shape[1]
    self.context = DegradationContext(context_len=length, context_dim=width, types=(), dtype=dtype or jnp.float32)
    # the schedule GenDeg trained with (configs/generate.yaml: linear_start/end in √β, 1000 steps)
    self.schedule = diffusion.make_schedule("scaled_linear", 1000, 0.00085, 0.012)
    self.correct_fn, corrector_params = corrector if corrector else (None, None)
    self.params = {"unet": weights.unet_params, "vae": weights.vae_params, "context": weights.context,
                   "corrector": corrector_params}
    self._run = jax.jit(self._generate, static_argnames=("correct",))

  @property
  def latent_channels(self):
    return self.weights.vae.latent_channels

  def latent_shape(self, height, width):
    f = self.weights.vae.downsample_factor
    return (height // f, width // f, self.latent_channels)

  def noises(self, seed, n, height, width):
    """(noise, step_noise) for n samples at height × width; sample i's from key fold_in(seed, i)
    alone, so a sample does not depend on how many are drawn with it."""
    import jax
    import jax.numpy as jnp
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(n))
    return self.noises_from_keys(keys, height, width)

  def noises_from_keys(self, keys, height, width):
    """(noise, step_noise) with sample i's drawn from keys[i] alone."""
    import jax
    import jax.numpy as jnp
    shape = self.latent_shape(height, width)
    init = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), shape))(keys)
    steps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), (self.steps,) + shape))(keys)
    return init, jnp.swapaxes(steps, 0, 1)

  def __call__(self, clean, text, null_text, mu_bins, sigma_bins, noise, step_noise, correct=False):
    if correct and self.correct_fn is None:
      raise UserError("structure correction asked for, but no corrector was loaded")
    return self._run(self.params, clean, text, null_text, mu_bins, sigma_bins, noise, step_noise, self.text_scale,
                     self.image_scale, correct=correct)

  def _generate(self, params, clean, text, null_text, mu_bins, sigma_bins, noise, step_noise, text_scale,
                image_scale, correct):
    import jax.numpy as jnp
    from jaxdeg import diffusion
    from jaxdeg.degrade import intensity
    from jaxdeg.diffusion import guidance
    unet, vae, w = self.weights.unet, self.weights.vae, self.weights
    image_lat, _ = vae.apply({"params": params["vae"]}, clean * 2.0 - 1.0, method=vae.encode)  # the mode
    b = image_lat.shape[0]
    stats = jnp.stack([intensity.one_hot(mu_bins), intensity.one_hot(sigma_bins)], axis=-2)
    ctx = self.context.apply({"params": params["context"]}, stats, text=text)
    null_ctx = self.context.apply({"params": params["context"]}, intensity.null_stats((b,)),
                                  text=jnp.broadcast_to(null_text, text.shape))

    def apply_fn(x, t, cond):
      image, context = cond
      return unet.apply({"params": params["unet"]}, jnp.concatenate([x, image], axis=-1), t, context)

    model_fn = guidance.dual(apply_fn, (image_lat, ctx), (image_lat, null_ctx), (jnp.zeros_like(image_lat), null_ctx),
                             text_scale, image_scale)
    z = diffusion.euler_ancestral(model_fn, noise, None, self.schedule, self.steps, interp="log",
                                  step_noise=step_noise)
    x = jnp.clip(vae.apply({"params": params["vae"]}, z / w.scaling_factor, method=vae.decode), -1.0, 1.0)
    out = (x + 1.0) * 0.5
    if correct:
      out = self.correct_fn(params["corrector"], clean, out)
    return jnp.clip(out, 0.0, 1.0)


def to_uint8(images):
  """As the official script: 255·x truncated to 8 bits."""
  return (255.0 * np.asarray(images, np.float32)).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# the command


def _parser():
  from jaxdeg.models.ldm.conditioning import PROMPT_SUFFIXES
  from jaxdeg.cli import ArgumentParser
  p = ArgumentParser(prog="jaxdeg gendeg", description=__doc__.splitlines()[0])
  p.add_argument("input", help="clean image")
  p.add_argument("output", help="output PNG (with --samples N > 1: OUTPUT_STEM_<i>.png)")
  p.add_argument("--weights", required=True, help="GenDeg's generator checkpoint (.ckpt or .safetensors)")
  p.add_argument("--trust-pickle", action="store_true",
                 help="allow full unpickling of .ckpt files (runs code stored in them): only for files you trust")
  p.add_argument("--type", required=True, help=f"degradation: {', '.join(PROMPT_SUFFIXES)} (or motion, low-light)")
  p.add_argument("--mu", type=float, help=f"mean of |clean - degraded| in [0, {MU_MAX}]")
  p.add_argument("--sigma", type=float, help=f"its standard deviation in [0, {SIGMA_MAX}]")
  p.add_argument("--histograms", help="GenDeg's data/ folder: draw μ, σ from its per-dataset histograms")
  p.add_argument("--prompt", help="the text prompt as given (default: '<caption>, in hazy conditions')")
  p.add_argument("--caption", default="", help="caption of the image for the default prompt")
  p.add_argument("--vocabulary", help="CLIP BPE vocabulary (a tokenizer/ folder or bpe_simple_vocab_16e6.txt.gz)")
  p.add_argument("--structure", help="GenDeg's structure-correction checkpoint (nafnet_sd.ckpt)")
  p.add_argument("--correct", choices=("auto", "all"), default="auto",
                 help="with --structure: 'auto' corrects haze and motion blur (run_single --auto_s), 'all' every type")
  p.add_argument("--samples", type=int, default=1)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--steps", type=int, default=100)
  p.add_argument("--cfg-text", "--text-scale", dest="text_scale", type=float, default=7.5)
  p.add_argument("--cfg-image", "--image-scale", dest="image_scale", type=float, default=1.5)
  p.add_argument("--resolution", type=int, default=512)
  p.add_argument("--bf16", action="store_true", help="compute in bfloat16 (parameters stay float32)")
  p.add_argument("--no-ema", action="store_true", help="the UNet's trained weights instead of its EMA")
  return p


def _check(args):
  from jaxdeg.models.ldm.conditioning import PROMPT_SUFFIXES
  args.type = ALIASES.get(args.type, args.type)
  if args.type not in PROMPT_SUFFIXES:
    raise UserError(f"--type: unknown degradation type {args.type!r}; known: {', '.join(PROMPT_SUFFIXES)}")
  if (args.mu is None) != (args.sigma is None):
    raise UserError("--mu and --sigma go together (or give neither and --histograms)")
  if args.mu is None and not args.histograms:
    raise UserError("give --mu and --sigma, or --histograms (GenDeg's data/ folder) to draw them")
  for name, value, top in (("--mu", args.mu, MU_MAX), ("--sigma", args.sigma, SIGMA_MAX)):
    if value is not None and not 0.0 <= value <= top:
      raise UserError(f"{name} {value}: out of range; GenDeg's bins cover [0, {top}]")
  if args.samples < 1 or args.steps < 1:
    raise UserError("--samples and --steps must be at least 1")
  if args.resolution < 8 or args.resolution % 8:
    raise UserError(f"--resolution {args.resolution}: must be a positive multiple of 8 (the VAE's factor)")
  if not os.path.isfile(args.input):
    raise UserError(f"{args.input}: no such file")


def _read_image(path, size):
  from jaxdeg.data.images import decode_image, to_float
  from jaxdeg.data.resize import lanczos_square
  # decode_image: the pixel cap and value checks of every reader; uint8 resized as RGB, as before
  return to_float(lanczos_square(decode_image(path), size))


def _outputs(path, n):
  if n == 1:
    return [path]
  stem, ext = os.path.splitext(path)
  return [f"{stem}_{i}{ext or '.png'}" for i in range(n)]


def run(args):
  import jax.numpy as jnp
  from jaxdeg.interop import compvis
  from jaxdeg.models.ldm.conditioning import gendeg_prompt
  from jaxdeg.tasks.structure import official_corrector
  _check(args)
  rng = np.random.default_rng(args.seed)
  if args.mu is None:
    mu, sigma, dataset = draw_mu_sigma(load_histograms(args.histograms), args.type, rng)
    print(f"μ {mu:.4f}, σ {sigma:.4f} drawn from {dataset}'s histograms")
  else:
    mu, sigma = args.mu, args.sigma
  clean = _read_image(args.input, args.resolution)
  dtype = jnp.bfloat16 if args.bf16 else jnp.float32
  flag = "--trust-pickle"
  weights = compvis.load(args.weights, allow_unsafe_pickle=args.trust_pickle, flag=flag, use_ema=not args.no_ema,
                         dtype=dtype)
  correct = bool(args.structure) and (args.correct == "all" or args.type in AUTO_CORRECTED)
  corrector = official_corrector(args.structure, allow_unsafe_pickle=args.trust_pickle, flag=flag,
                                 dtype=dtype) if correct else None
  model = GenDeg(weights, args.steps, args.text_scale, args.image_scale, corrector, dtype)
  prompt = args.prompt if args.prompt is not None else gendeg_prompt(args.type, args.caption)
  encode = prompt_encoder(weights, args.vocabulary)
  text, null_text = encode([prompt]), encode.null
  n = args.samples
  print(f"sampling {n} image(s) at {args.resolution}², {args.steps} steps (one compiled loop: no per-step progress)",
        flush=True)
  noise, step_noise = model.noises(args.seed, n, *clean.shape[:2])
  images = model(np.repeat(clean[None], n, 0), np.repeat(text, n, 0), null_text,
                 np.full((n,), official_bin(mu, MU_MAX), np.int32), np.full((n,), official_bin(sigma, SIGMA_MAX), np.int32),
                 noise, step_noise, correct=correct)
  from PIL import Image
  for path, image in zip(_outputs(args.output, n), to_uint8(images)):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(image).save(path)
    print(f"wrote {path}")
  print(f"prompt {prompt!r}, μ {mu:.4f} σ {sigma:.4f}, {args.steps} steps, guidance text {args.text_scale} image "
        f"{args.image_scale}, {'EMA' if weights.used_ema else 'trained'} UNet weights"
        f"{', structure-corrected' if correct else ''}")
  return 0


def main(argv=None):
  try:
    return run(_parser().parse_args(sys.argv[1:] if argv is None else argv))
  except UserError as e:
    print(f"jaxdeg: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
