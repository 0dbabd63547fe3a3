"""Intensity histograms fitted on real pairs (`config.synth.fit_sources`: data source dicts of kind
paired, tfds or array_record), as GenDeg fitted its per-dataset histograms: every pair resized whole
to stats_size² (Lanczos) and its (μ, σ) counted under '<type>/<label>' (the pair's type label, the
source's `label` or name).
"""
import grain
from absl import logging

from jaxdeg.data import skips
from jaxdeg.data.from_config import build_input, declared_types, source_label
from jaxdeg.data.resize import PairResize
from jaxdeg.data.transforms import Decode
from jaxdeg.errors import ConfigError
from jaxdeg.synth.histograms import IntensityHistograms


def fit_pairs(specs, stats_size=256, log=logging.info) -> IntensityHistograms:
  hist = IntensityHistograms()
  for i, raw in enumerate(specs):
    where = f"config.synth.fit_sources[{i}]"
    inp = build_input(raw, on_error="skip", where=where)
    if not inp.paired_source:
      raise ConfigError(f"{where}: holds no degraded images; fitting needs real pairs (paired, tfds, array_record)")
    declared = sorted(declared_types(raw))
    label = source_label(raw, i)
    ds = (grain.MapDataset.source(inp.source).map(Decode("skip", skips.skip_dir())).map(PairResize(stats_size))
          .to_iter_dataset(grain.ReadOptions(num_threads=4)))
    stats, untyped = {}, 0
    for rec in ds:  # skipped records (None) are dropped by grain and counted by skips
      type_name = rec["type"] or (declared[0] if len(declared) == 1 else "")
      if not type_name:
        untyped += 1
        continue
      mus, sigmas = stats.setdefault(f"{type_name}/{label}", ([], []))
      mus.append(rec["meta"]["mu"])
      sigmas.append(rec["meta"]["sigma"])
    if untyped:
      raise ConfigError(f"{where}: {untyped} pairs have no degradation type; give the source a 'type'")
    if not stats:
      raise ConfigError(f"{where}: no usable pairs")
    for source, (mus, sigmas) in stats.items():
      hist.add(source, mus, sigmas)
      log("intensity histograms: %d pairs of %s", len(mus), source)
  return hist
