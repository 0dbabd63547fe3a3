"""`--mode=synthesize`: fields of `config.synth`, generator and corrector loading, the run.

    config.synth.clean_sources     data source dicts (kinds of jaxdeg.data.from_config) of clean images
    config.synth.size              centre crop (pixels); smaller images are skipped and counted
    config.synth.types             degradation types; every clean image gets one sample of each
    config.synth.generator         'ldm' (a trained GenDeg run: ldm_workdir), 'released' (GenDeg's
                                   released checkpoint: weights, optionally structure_weights; a .ckpt
                                   needs allow_unsafe_pickle) or 'procedural'
    config.synth.histograms        JSON of fitted (μ, σ) histograms; '' fits them from the procedural
                                   degradations on the clean images (fit_samples_per_type draws)
    config.synth.structure_workdir a trained `structure` run applied to structure_types ('' = none)
    config.synth.captions          per-image captions for a CLIP-conditioned LDM (JSON, '' = none)
    config.synth.tolerance_abs/_rel, uniform_every, source_weights, batch_size, steps, text_scale,
    image_scale, records_per_chunk, prefix, seed
"""
import os

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxdeg.errors import ConfigError
from jaxdeg.synth import procedural, synthesize
from jaxdeg.synth.histograms import IntensityHistograms

GENERATORS = ("ldm", "procedural", "released")
HISTOGRAMS_FILE = "intensity_histograms.json"


def defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      clean_sources=(), size=512, types=("haze", "rain", "snow", "motion_blur", "low_light", "raindrop"),
      generator="ldm", ldm_workdir="", histograms="", fit_samples_per_type=256, structure_workdir="",
      # JSON {clean image name: caption} (or GenDeg's train_csv.json): a CLIP-conditioned LDM then gets
      # '<caption>, in hazy conditions' per image instead of the type's text alone
      captions="",
      # generator='released': GenDeg's released checkpoint (CompVis single file) and, optionally, its
      # structure corrector; a Lightning .ckpt runs code when read: allow_unsafe_pickle says so
      weights="", structure_weights="", allow_unsafe_pickle=False, vocabulary="",
      structure_types=("haze", "motion_blur"),
      # GenDeg drops samples whose achieved intensity misses the request; its rule is not
      # published: keep when |μ_achieved − μ| ≤ tolerance_abs + tolerance_rel · μ.
      tolerance_abs=0.02, tolerance_rel=0.25, uniform_every=20, source_weights={}, batch_size=8,
      steps=100, sampler="euler_ancestral", text_scale=7.5, image_scale=1.5, records_per_chunk=256,
      prefix="gendeg", seed=0,
      # μ/σ are measured on stats_size² resizes (GenDeg: 256); an LDM generator uses its own value
      stats_size=256))


def _fit_or_load(s, workdir):
  if s.histograms:
    return IntensityHistograms.load(s.histograms)
  path = os.path.join(workdir, HISTOGRAMS_FILE)
  if os.path.exists(path):  # a resumed run keeps the histograms its first part used
    return IntensityHistograms.load(path)
  data = synthesize.clean_images(s)
  images = np.stack([x["clean"] for x in (data[i] for i in range(len(data))) if x is not None])
  logging.info("fitting intensity histograms: %d draws per type on %d clean images", s.fit_samples_per_type,
               len(images))
  hist = procedural.fit_procedural(images, tuple(s.types), s.fit_samples_per_type, seed=s.seed,
                                   stats_size=s.stats_size)
  if jax.process_index() == 0:
    hist.save(path)
  return hist


def _generator(s, hist):
  """(generate, type_ids {type: id}, name)."""
  types = tuple(s.types)
  if s.generator == "procedural":
    missing = [t for t in types if t not in hist.calibration]
    if missing:
      raise ConfigError(f"config.synth.generator='procedural' needs procedural calibration for {missing}: "
                        "leave config.synth.histograms empty to fit it")
    return procedural.procedural_generator(types, hist.calibration), {t: i for i, t in enumerate(types)}, "procedural"
  if s.generator == "ldm":
    if not s.ldm_workdir:
      raise ConfigError("config.synth.ldm_workdir is empty: point it at a trained `ldm` run")
    from jaxdeg.synth import trained
    return trained.ldm_generator(s)  # sets s.stats_size to the LDM's
  if s.generator == "released":
    if not s.weights:
      raise ConfigError("config.synth.generator='released' needs config.synth.weights: GenDeg's checkpoint file")
    from jaxdeg.synth import trained
    return trained.released_generator(s)
  raise ConfigError(f"config.synth.generator={s.generator!r}: must be one of {', '.join(GENERATORS)}")


def run(config, workdir):
  if "synth" not in config:
    raise ConfigError("--mode=synthesize needs a config with a `synth` section (see configs/gendeg_synthesize.py)")
  s = defaults()
  unknown = set(config.synth) - set(s)
  if unknown:
    raise ConfigError(f"config.synth: unknown field(s) {sorted(unknown)}; fields: {sorted(s)}")
  s.update(config.synth)
  synthesize.check_synth_config(s)
  os.makedirs(workdir, exist_ok=True)
  if s.generator == "ldm" and s.ldm_workdir:
    from jaxdeg.synth import trained
    generate, type_ids, name = trained.ldm_generator(s)
    hist = _fit_or_load(s, workdir)
  else:
    hist = _fit_or_load(s, workdir)
    generate, type_ids, name = _generator(s, hist)
  correct = None
  if s.structure_workdir:
    from jaxdeg.synth import trained
    correct = trained.structure_corrector(s.structure_workdir)
  elif s.structure_weights:
    from jaxdeg.synth import trained
    correct = trained.official_structure_corrector(s)
  return synthesize.run_jobs(s, generate, correct, hist, workdir, generator_name=name, type_ids=type_ids)
