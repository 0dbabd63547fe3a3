"""Synthesis at scale (`--mode=synthesize`): clean images in, ArrayRecord shards of pairs out.

Jobs: the synthesis plan (`plan.py`): type by type, each clean image of the type's pool once, with
its (μ, σ), source and uniform-or-not fixed by the seed. Clean images are resized whole to size²
(Lanczos, as GenDeg; `clean_fit='crop'`: centre crops, smaller images skipped). Process p of n takes
jobs p, p + n, ... (`records.process_share`) and runs them on its own devices (the batch sharded
over them; no collectives between processes, so processes never wait for each other). For each
job: generate with the generator's own key (folded from the job index, so results do not depend on
batching), conditioned on the job's condition (its type, or the mixture its source is prompted as),
structure-correct the configured types, measure the achieved (μ, σ) and drop the sample when μ
misses the request by more than `tolerance_abs + tolerance_rel · μ` (GenDeg's rule is not
published; these are config fields).

Output: `<workdir>/<prefix>-p<process>-<chunk>.array_record` (records.RecordWriter: chunks become
final only when complete), each record with metadata: its plan entry (job, image, type, condition,
source, requested μ/σ, uniform, draw), the achieved μ/σ, the clean image's name, generator,
structure_corrected. Resuming reads the last complete record's job index and continues after it:
nothing is written twice. `synthesis_summary-p<process>.json` holds the counts (jobs and uniform
draws per type, kept, dropped, skipped images) and the throughput.
"""
import functools
import json
import os
import sys
import time
from typing import Callable

import grain
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxdeg.data import records, skips
from jaxdeg.data.from_config import build_input, declared_types
from jaxdeg.data.resize import lanczos_square
from jaxdeg.data.transforms import CenterCrop, Decode
from jaxdeg.degrade import intensity
from jaxdeg.errors import ConfigError
from jaxdeg.synth.plan import Plan

CLEAN_FITS = ("resize", "crop")

# generate(clean (B, H, W, 3) in [0, 1], type_ids (B,), mu (B,), sigma (B,), keys (B,), names=[B clean
# image names] (for per-image captions)) -> (B, H, W, 3)
Generate = Callable[..., jax.Array]


def check_synth_config(s):
  if not s.types:
    raise ConfigError("config.synth.types is empty: name the degradation types to synthesise")
  if s.batch_size < 1 or s.size < 8:
    raise ConfigError(f"config.synth.batch_size={s.batch_size} / size={s.size}: must be ≥ 1 / ≥ 8")
  if s.tolerance_abs < 0 or s.tolerance_rel < 0:
    raise ConfigError("config.synth.tolerance_abs and tolerance_rel must be ≥ 0")
  if not s.clean_sources:
    raise ConfigError("config.synth.clean_sources is empty: name the clean images to degrade")
  if s.clean_fit not in CLEAN_FITS:
    raise ConfigError(f"config.synth.clean_fit={s.clean_fit!r}: must be one of {', '.join(CLEAN_FITS)}")


class _Resize(grain.transforms.Map):
  """Decoded record -> {'clean': size² Lanczos resize in [0, 1], 'name'} (GenDeg's GenDS input)."""

  def __init__(self, size):
    self.size = size

  def map(self, rec):
    if rec is None:
      return None
    from jaxdeg.data.images import to_float
    return {"clean": to_float(lanczos_square(rec["clean"], self.size)), "name": rec["name"]}


def clean_images(s):
  """(a lazy MapDataset of clean images {'clean', 'name', ...} (None = unusable), each image's own
  degradation type: its source's single declared type, else '')."""
  crop = s.clean_fit == "crop"
  specs = tuple(s.clean_sources)
  inputs = [build_input(spec, min_size=s.size if crop else 0, on_error="skip",
                        where=f"config.synth.clean_sources[{i}]") for i, spec in enumerate(specs)]
  fit = CenterCrop(s.size, "skip", skips.skip_dir()) if crop else _Resize(s.size)
  chains = [grain.MapDataset.source(inp.source).map(Decode("skip", skips.skip_dir())).map(fit) for inp in inputs]
  types = []
  for spec, inp in zip(specs, inputs):
    declared = declared_types(spec)
    types += [next(iter(declared)) if len(declared) == 1 else ""] * len(inp.source)
  return (chains[0] if len(chains) == 1 else grain.MapDataset.concatenate(chains)), types


def _resume_point(writer):
  """Job index after the last complete record of this process (0 when nothing is written)."""
  last = writer.last_record()
  return 0 if last is None else int(last["meta"]["job"]) + 1


@functools.partial(jax.jit, static_argnums=2)
def _achieved(clean, degraded, stats_size):
  return intensity.intensity_stats(clean, degraded, size=stats_size)


def on_target(requested_mu, achieved_mu, s):
  return np.abs(achieved_mu - requested_mu) <= s.tolerance_abs + s.tolerance_rel * requested_mu


def run_jobs(s, generate: Generate, correct, hist, workdir, *, generator_name, type_ids,
             process_index=None, process_count=None, log=None):
  """Runs this process's pending jobs; returns its summary dict (also written as JSON)."""
  check_synth_config(s)
  data, image_types = clean_images(s)
  plan = Plan(s, hist, image_types)
  needed = {plan.mixed[src] for names, _ in plan.sources.values() for src in names if src in plan.mixed}
  unknown = sorted(needed - set(type_ids))
  if unknown:
    raise ConfigError(f"config.synth.mixed_sources: the generator has no condition {unknown}; "
                      f"it knows {', '.join(type_ids)} (set mixed_sources={{}} to prompt those sources as their type)")
  writer = records.RecordWriter(workdir, prefix=s.prefix, records_per_chunk=s.records_per_chunk,
                                process_index=process_index, process_count=process_count)
  share = records.process_share(len(plan), writer.process_index, writer.process_count)
  start = _resume_point(writer)
  todo = [j for j in share if j >= start]
  per_type = plan.counts(share)
  for stat in per_type.values():
    stat.update(kept=0, dropped=0)
  counts = {"jobs": len(share), "already_done": len(share) - len(todo), "kept": 0, "dropped": 0,
            "skipped_images": 0, "uniform": sum(v["uniform"] for v in per_type.values()), "per_type": per_type}
  if counts["already_done"]:
    logging.info("synthesis: resuming after job %d (%d of this process's %d jobs done, %d records)",
                 start - 1, counts["already_done"], len(share), writer.written)
  key = jax.random.PRNGKey(s.seed)
  t0, done, warm = time.monotonic(), 0, None
  for b in range(0, len(todo), s.batch_size):
    entries = [plan[j] for j in todo[b:b + s.batch_size]]
    examples = [(e, data[e["image"]]) for e in entries]
    usable = [(e, ex) for e, ex in examples if ex is not None]
    counts["skipped_images"] += len(examples) - len(usable)
    if usable:
      _run_batch(usable, s, generate, correct, type_ids, key, writer, generator_name, counts)
    done += len(entries)
    if warm is None:  # the first batch includes compilation
      warm = (time.monotonic(), done)
    rate = done / max(time.monotonic() - t0, 1e-9)
    line = (f"synthesis: {counts['already_done'] + done}/{len(share)} jobs, kept {counts['kept']}, "
            f"dropped {counts['dropped']}, {rate:.2f} images/s")
    (log or _progress)(line)
  writer.close()
  if log is None and todo:
    print(file=sys.stderr)
  end = time.monotonic()
  counts["seconds"] = end - t0
  counts["images_per_second"] = done / counts["seconds"] if done else 0.0
  if warm is not None and done > warm[1]:
    counts["images_per_second_after_first_batch"] = (done - warm[1]) / (end - warm[0])
  counts["records_written"] = writer.written
  with open(os.path.join(workdir, f"synthesis_summary-p{writer.process_index:05d}.json"), "w") as f:
    json.dump(counts, f, indent=1)
  logging.info("synthesis done: %s", {k: v for k, v in counts.items() if k != "per_type"})
  return counts


def _progress(line):
  print("\r" + line, end="", file=sys.stderr, flush=True)


def _pad(x, n):
  return np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)]) if len(x) < n else x


def _run_batch(usable, s, generate, correct, type_ids, key, writer, generator_name, counts):
  plans = [e for e, _ in usable]
  n, size = len(usable), s.batch_size
  clean = _pad(np.stack([ex["clean"] for _, ex in usable]).astype(np.float32), size)
  tid = _pad(np.array([type_ids[p["condition"]] for p in plans], np.int32), size)
  mu = _pad(np.array([p["mu"] for p in plans], np.float32), size)
  sigma = _pad(np.array([p["sigma"] for p in plans], np.float32), size)
  jobs = _pad(np.array([p["job"] for p in plans], np.uint32), size)
  keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.asarray(jobs))
  names = [str(ex["name"]) for _, ex in usable]
  names += names[-1:] * (size - n)
  out = generate(jnp.asarray(clean), jnp.asarray(tid), jnp.asarray(mu), jnp.asarray(sigma), keys, names=names)
  fix = np.array([p["type"] in tuple(s.structure_types) for p in plans] + [False] * (size - n))
  if correct is not None and fix.any():
    corrected = correct(jnp.asarray(clean), out)
    out = jnp.where(jnp.asarray(fix)[:, None, None, None], corrected, out)
  out = jnp.clip(out, 0.0, 1.0)
  got_mu, got_sigma = (np.asarray(v) for v in _achieved(jnp.asarray(clean), out, int(s.stats_size)))
  out = np.asarray(out)
  keep = on_target(mu, got_mu, s)
  for i, (entry, ex) in enumerate(usable):
    stat = counts["per_type"][entry["type"]]
    if not keep[i]:
      counts["dropped"] += 1
      stat["dropped"] += 1
      continue
    writer.write(_to_uint8(ex["clean"]), _to_uint8(out[i]), **entry, mu_achieved=float(got_mu[i]),
                 sigma_achieved=float(got_sigma[i]), name=str(ex["name"]), generator=generator_name,
                 structure_corrected=bool(correct is not None and fix[i]))
    counts["kept"] += 1
    stat["kept"] += 1


def _to_uint8(x):
  return np.round(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
