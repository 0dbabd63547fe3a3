"""GenDS-style synthesis: every clean image, resized to 512², gets one sample of each degradation type
but its own source's (GenDeg; see jaxdeg/synth/run.py for the fields and the earlier options).

  python -m jaxdeg.main --config=configs/gendeg_synthesize.py --workdir=runs/gends --mode=synthesize \\
      --config.synth.ldm_workdir=runs/gendeg_ldm --config.synth.structure_workdir=runs/gendeg_structure \\
      --config.synth.clean_sources='({"kind": "folder", "path": "/data/clean"},)'

Writes ArrayRecord shards (one series per process) that `kind="array_record"` data sources read.
Resumable: run the same command again after an interruption.
GenDeg's own per-dataset histograms: --config.synth.histograms=<your copy of GenDeg's data/ folder>.
Variants: `:tiny` (procedural generator on the bundled photos, 64², for tests and CPU).
"""
from ml_collections import config_dict

from jaxdeg.recipes import unknown_variant
from jaxdeg.synth.run import defaults
from jaxdeg.train.defaults import base_config


def get_config(variant=None):
  c = base_config()
  c.task = ""  # synthesis only; --mode=synthesize reads `synth`
  c.synth = defaults()
  c.synth.clean_sources = config_dict.placeholder(tuple)
  if variant == "tiny":
    c.synth.clean_sources = ({"kind": "samples", "photos": ("astronaut", "chelsea", "coffee", "rocket")},)
    c.synth.size = 64
    c.synth.types = ("haze", "low_light", "motion_blur")
    c.synth.generator = "procedural"
    c.synth.fit_samples_per_type = 32
    c.synth.batch_size = 4
    c.synth.records_per_chunk = 3
  elif variant:
    raise unknown_variant("configs/gendeg_synthesize.py", variant, ["tiny"])
  return c
