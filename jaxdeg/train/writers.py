"""Metric writing with clu; a plain logging writer without TensorBoard.

clu's `metric_writers` package imports TensorFlow's summary writer at import time, so on
accelerator images without TensorFlow neither it nor `periodic_actions` can be imported. They are
imported on first use (TensorFlow takes seconds to import: commands that write no metrics skip it).
The fallback, also chosen with `config.train.tensorboard=False`, logs scalars and writes image grids
as PNG files; progress (steps/s, ETA) is then reported by `_PlainProgress`.
"""
import functools
import os
import time

import jax
from absl import logging

from jaxdeg.data import images as image_io


@functools.cache
def clu_writers():
  """(clu.metric_writers, clu.periodic_actions), or None when TensorFlow/TensorBoard is missing."""
  try:
    from clu import metric_writers, periodic_actions
  except ImportError as e:
    logging.info("clu metric writers unavailable (%s); using plain logging writer", e)
    return None
  return metric_writers, periodic_actions


class PngImageWriter:
  """Writes every image summary as a PNG grid under workdir/images, in addition to TensorBoard."""

  def __init__(self, workdir):
    self.dir = os.path.join(workdir, "images")

  def write_images(self, step, images):
    os.makedirs(self.dir, exist_ok=True)
    for name, grid in images.items():
      image_io.write_image(os.path.join(self.dir, f"{name.replace('/', '_')}_{int(step):07d}.png"), grid[0])

  def write_scalars(self, step, scalars):
    del step, scalars

  def write_hparams(self, hparams):
    del hparams

  def flush(self):
    pass

  def close(self):
    pass


class _PlainWriter(PngImageWriter):
  """Scalars to the log; used only when clu's writers cannot be imported."""

  def write_scalars(self, step, scalars):
    logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.6g}" for k, v in sorted(scalars.items())))

  def write_hparams(self, hparams):
    logging.info("hparams: %s", hparams)


class _MultiWriter:
  def __init__(self, writers):
    self.writers = writers

  def __getattr__(self, name):
    def call(*args, **kw):
      for w in self.writers:
        getattr(w, name)(*args, **kw)
    return call


def create_writer(workdir: str, tensorboard: bool = True):
  """TensorBoard (when wanted and installed) + log + PNG on process 0; nothing on other processes."""
  if jax.process_index() != 0:
    return _MultiWriter([])
  if tensorboard and clu_writers():
    tb = clu_writers()[0].create_default_writer(workdir, just_logging=False, asynchronous=True)
    return _MultiWriter([tb, PngImageWriter(workdir)])
  return _MultiWriter([_PlainWriter(workdir)])


class _PlainProgress:
  """steps/s and ETA, every `every_secs`, like clu's ReportProgress."""

  def __init__(self, num_train_steps, writer, every_secs=30.0):
    self.total, self.writer, self.every = num_train_steps, writer, every_secs
    self.t0 = self.step0 = None

  def __call__(self, step, t=None):
    t = time.monotonic() if t is None else t
    if self.t0 is None:
      self.t0, self.step0 = t, step
      return
    if t - self.t0 < self.every or step == self.step0:
      return
    rate = (step - self.step0) / (t - self.t0)
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    logging.info("step %d/%d: %.3g steps/s, ETA %.0f min", step, self.total, rate, eta / 60)
    self.writer.write_scalars(step, {"steps_per_sec": rate})
    self.t0, self.step0 = t, step


def create_progress(num_train_steps, writer, every_secs=30.0, tensorboard=True):
  if tensorboard and clu_writers() and jax.process_index() == 0:
    return clu_writers()[1].ReportProgress(num_train_steps=num_train_steps, writer=writer, every_secs=every_secs)
  return _PlainProgress(num_train_steps, writer, every_secs)
