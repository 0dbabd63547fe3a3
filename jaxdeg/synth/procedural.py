"""Intensity statistics of the procedural degradations, and a procedural generator that aims at a
requested μ.

`fit_procedural` degrades clean images with each type at uniform random intensities, measures
(μ, σ) as GenDeg does, and returns the histograms (one source per type) plus a calibration: the
mean μ reached in each of 20 intensity bins. `procedural_generator` inverts that calibration
(monotone interpolation) to choose the intensity for a requested μ. It is the procedural baseline
of the synthesis pipeline, and what the tests and the CPU example run without a trained LDM.
"""
import jax
import jax.numpy as jnp
import numpy as np

from jaxdeg import degrade
from jaxdeg.degrade import intensity as stats
from jaxdeg.synth.histograms import IntensityHistograms

CALIBRATION_BINS = 20


def _measure(type_name, stats_size):
  def fn(key, clean, levels):
    keys = jax.random.split(key, clean.shape[0])
    degraded = jax.vmap(lambda k, x, i: degrade.apply(k, x, type_name, i)[0])(keys, clean, levels)
    return stats.intensity_stats(clean, degraded, size=stats_size)
  return jax.jit(fn)


def fit_procedural(images, types, samples_per_type, seed=0, batch_size=16, stats_size=stats.STATS_SIZE):
  """IntensityHistograms (one source per type, with `calibration` {type: (intensity centres,
  mean μ)}) from clean `images` (N, H, W, 3) in [0, 1], `samples_per_type` random draws per type."""
  images = np.asarray(images, np.float32)
  rng = np.random.default_rng(seed)
  hist = IntensityHistograms()
  for t_index, type_name in enumerate(types):
    measure = _measure(type_name, stats_size)
    levels, mus = [], []
    for start in range(0, samples_per_type, batch_size):
      n = min(batch_size, samples_per_type - start)
      pick = rng.integers(0, len(images), batch_size)
      level = rng.uniform(0.0, 1.0, batch_size).astype(np.float32)
      key = jax.random.fold_in(jax.random.PRNGKey(seed), t_index * 1_000_003 + start)
      mu, sigma = (np.asarray(v)[:n] for v in measure(key, jnp.asarray(images[pick]), jnp.asarray(level)))
      hist.add(type_name, mu, sigma)
      levels.append(level[:n])
      mus.append(mu)
    hist.calibration[type_name] = _calibrate(np.concatenate(levels), np.concatenate(mus))
  return hist


def _calibrate(levels, mus):
  edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
  centres, means = [], []
  for lo, hi in zip(edges[:-1], edges[1:]):
    inside = (levels >= lo) & (levels < hi)
    if inside.any():
      centres.append((lo + hi) / 2)
      means.append(float(mus[inside].mean()))
  # μ should rise with intensity; force it so the inverse is a function
  return np.array(centres, np.float32), np.maximum.accumulate(np.array(means, np.float32))


def procedural_generator(types, calibration):
  """generate(clean, type_ids, mu, sigma, keys) with jaxdeg.degrade at the calibrated intensity."""
  tables = [calibration[t] for t in types]

  def one(type_id, key, clean, mu):
    branches = [lambda k, x, m, t=t, table=table: degrade.apply(
        k, x, t, jnp.interp(m, jnp.asarray(table[1]), jnp.asarray(table[0])))[0]
        for t, table in zip(types, tables)]
    return jax.lax.switch(type_id, branches, key, clean, mu)

  # the procedural families have one intensity knob (no σ) and no text (no names)
  jitted = jax.jit(lambda clean, type_ids, mu, keys: jax.vmap(one)(type_ids, keys, clean, mu))

  def generate(clean, type_ids, mu, sigma, keys, names=None):
    return jitted(clean, type_ids, mu, keys)
  return generate
