"""`--mode=synthesize`: fields of `config.synth`, generator and corrector loading, the run.

    config.synth.clean_sources     data source dicts (kinds of jaxdeg.data.from_config) of clean images;
                                   a source's type (declared or its 'type') is its images' own type
    config.synth.size, clean_fit   'resize': every image resized whole to size² (GenDeg); 'crop':
                                   centre crops, smaller images skipped and counted
    config.synth.types             degradation types, synthesised one after the other (plan.py)
    config.synth.augment_only      True: an image gets every type but its own (GenDeg); False: all
    config.synth.generator         'ldm' (a trained GenDeg run: ldm_workdir), 'released' (GenDeg's
                                   released checkpoint: weights, optionally structure_weights; a .ckpt
                                   needs allow_unsafe_pickle) or 'procedural'
    config.synth.histograms        a JSON file of fitted (μ, σ) histograms, or a folder in GenDeg's
                                   data/ layout (its official per-dataset files); '' fits them: from
                                   fit_sources (real pairs) when given, else from the procedural
                                   degradations on the clean images (fit_samples_per_type draws)
    config.synth.source_weights    {'<type>/<dataset>': multiplier} of a source's chance to be drawn
    config.synth.mixed_sources     {'<type>/<dataset>': condition}: sources prompted as a mixture
    config.synth.structure_workdir a trained `structure` run applied to structure_types ('' = none)
    config.synth.captions          per-image captions for a CLIP-conditioned LDM (JSON, '' = none)
    config.synth.tolerance_abs/_rel, uniform_every, batch_size, steps, text_scale, image_scale,
    records_per_chunk, prefix, seed
"""
import os

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxdeg.errors import ConfigError
from jaxdeg.synth import procedural, synthesize
from jaxdeg.synth.histograms import IntensityHistograms
from jaxdeg.synth.official_histograms import load_official

GENERATORS = ("ldm", "procedural", "released")
HISTOGRAMS_FILE = "intensity_histograms.json"
# GenDeg's GenDS script: intense datasets drawn less often (its weights relative to the others)
OFFICIAL_SOURCE_WEIGHTS = {"rain/ORD": 0.2, "haze/DenseHaze": 0.05, "haze/NH-HAZE": 0.1, "haze/I-HAZE": 0.25,
                           "low_light/SID": 0.2}
# ... and the sources whose pairs it prompts as mixtures ('rainy' -> 'rainy and hazy')
OFFICIAL_MIXED_SOURCES = {"rain/ORD": "rain+haze", "snow/CSD": "snow+haze"}


def defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      clean_sources=(), size=512, types=("haze", "rain", "snow", "motion_blur", "low_light", "raindrop"),
      # (GenDeg) images resized whole to 512², each degraded into the types other than its own
      # source's; earlier jaxdeg: clean_fit='crop' (smaller images skipped), augment_only=False
      clean_fit="resize", augment_only=True,
      generator="ldm", ldm_workdir="", histograms="", fit_sources=(), fit_samples_per_type=256,
      structure_workdir="",
      # JSON {clean image name: caption} (or GenDeg's train_csv.json): a CLIP-conditioned LDM then gets
      # '<caption>, in hazy conditions' per image instead of the type's text alone
      captions="",
      # generator='released': GenDeg's released checkpoint (CompVis single file) and, optionally, its
      # structure corrector; a Lightning .ckpt runs code when read: allow_unsafe_pickle says so
      weights="", structure_weights="", allow_unsafe_pickle=False, vocabulary="",
      structure_types=("haze", "motion_blur"),
      # GenDeg drops samples whose achieved intensity misses the request; its rule is not
      # published: keep when |μ_achieved − μ| ≤ tolerance_abs + tolerance_rel · μ.
      # (GenDeg) draw k of each type's run is uniform when k % uniform_every == 0 (5 % per type);
      # sources picked with GenDeg's weights, ORD and CSD prompted as rain+haze / snow+haze
      tolerance_abs=0.02, tolerance_rel=0.25, uniform_every=20, source_weights=dict(OFFICIAL_SOURCE_WEIGHTS),
      mixed_sources=dict(OFFICIAL_MIXED_SOURCES), batch_size=8,
      steps=100, sampler="euler_ancestral", text_scale=7.5, image_scale=1.5, records_per_chunk=256,
      prefix="gendeg", seed=0,
      # μ/σ are measured on stats_size² resizes (GenDeg: 256); an LDM generator uses its own value
      stats_size=256))


def _fit_or_load(s, workdir):
  if s.histograms:
    return load_official(s.histograms) if os.path.isdir(s.histograms) else IntensityHistograms.load(s.histograms)
  path = os.path.join(workdir, HISTOGRAMS_FILE)
  if os.path.exists(path):  # a resumed run keeps the histograms its first part used
    return IntensityHistograms.load(path)
  if s.fit_sources:
    from jaxdeg.synth.fit_pairs import fit_pairs
    hist = fit_pairs(tuple(s.fit_sources), s.stats_size)
    if jax.process_index() == 0:
      hist.save(path)
    return hist
  data, _ = synthesize.clean_images(s)
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
