"""Data: grain sources and pipelines, TFDS builders, ArrayRecord pairs, image IO, sample photos.

  sources.py      folder / paired-folder / ArrayRecord sources (random access, undecoded records)
  layouts.py      how clean and degraded files pair up (RESIDE/SOTS, Rain100L, LOL, GoPro, BSD68)
  transforms.py   decode, aligned crops, on-the-fly degradations, fixed-shape examples
  pipeline.py     train_dataset / eval_dataset / to_global
  from_config.py  train_data(config) / eval_data(config) from config.data
  records.py      ArrayRecord pair format and the resumable per-process writer
  skips.py        counting of skipped records; write_skip_summary(workdir)
  tfds/           TFDS builders (TensorFlow Datasets is imported only there)
"""
