"""The synthesis plan: what job i makes, as a pure function of the seed, the clean pool and the
histograms — never of batching, processes or resumption.

Jobs run type by type, as GenDeg runs its GenDS script once per type: the jobs of types[0] first,
one per clean image of its pool, then types[1], ... A type's pool is every clean image, or with
`augment_only` (GenDeg) every image whose own source's type is another one. Within a type's run,
draw k is uniform over the source's fitted range when k % uniform_every == 0 (GenDeg's counter:
draws 0, 20, 40, ...: 5 % of every type), else from its histograms. The source (a histogram) is
picked by `source_weights` (multipliers, GenDeg's down-weights of intense datasets), and
`mixed_sources` names the sources whose pairs GenDeg prompts as mixtures (ORD: 'rainy and hazy').
"""
import bisect

import numpy as np

from jaxdeg.errors import ConfigError
from jaxdeg.synth.histograms import IntensityHistograms


def source_table(hist: IntensityHistograms, type_name, weights):
  """The histogram sources of a type ('haze' or 'haze/<dataset>') and their selection probabilities."""
  names = [k for k in hist.sources if k == type_name or k.startswith(type_name + "/")]
  if not names:
    raise ConfigError(f"no intensity histograms for type {type_name!r}; fitted: {', '.join(hist.sources)}")
  w = np.array([float(weights.get(n, 1.0)) for n in names])
  if (w < 0).any() or w.sum() <= 0:
    raise ConfigError(f"config.synth.source_weights for {type_name!r}: {dict(zip(names, w))} must be ≥ 0, not all 0")
  return names, w / w.sum()


class Plan:
  """plan[i] -> {'job', 'image', 'type', 'condition', 'source', 'mu', 'sigma', 'uniform', 'draw'}.

  `image_types`: each clean image's own degradation type ('' unknown), in pool order.
  """

  def __init__(self, s, hist, image_types):
    self.seed, self.every = int(s.seed), int(s.uniform_every)
    if self.every < 0:
      raise ConfigError(f"config.synth.uniform_every={self.every}: must be ≥ 0 (0: no uniform draws)")
    self.types, self.hist = tuple(s.types), hist
    self.mixed = dict(s.mixed_sources or {})
    weights = dict(s.source_weights or {})
    self.sources = {t: source_table(hist, t, weights) for t in self.types}
    own = np.asarray(list(image_types), dtype=object)
    everything = np.arange(len(own))
    self.pools = {t: everything[own != t] if s.augment_only else everything for t in self.types}
    self.starts = np.cumsum([0] + [len(self.pools[t]) for t in self.types]).tolist()

  def __len__(self):
    return self.starts[-1]

  def locate(self, job):
    """(type, draw index within the type's run, whether the draw is uniform) of a job; no draws."""
    job = int(job)
    if not 0 <= job < len(self):
      raise IndexError(f"job {job} of a {len(self)}-job plan")
    t = bisect.bisect_right(self.starts, job) - 1
    draw = job - self.starts[t]
    return self.types[t], draw, bool(self.every) and draw % self.every == 0

  def __getitem__(self, job):
    type_name, draw, uniform = self.locate(job)
    rng = np.random.default_rng([self.seed, int(job)])
    names, p = self.sources[type_name]
    source = names[rng.choice(len(names), p=p)]
    mu, sigma = self.hist.sample(source, rng, uniform)
    return {"job": int(job), "image": int(self.pools[type_name][draw]), "type": type_name,
            "condition": self.mixed.get(source, type_name), "source": source, "mu": float(mu),
            "sigma": float(sigma), "uniform": uniform, "draw": draw}

  def counts(self, jobs=None):
    """{type: {'jobs', 'uniform'}} over `jobs` (default: the whole plan); no draws needed."""
    out = {t: {"jobs": 0, "uniform": 0} for t in self.types}
    for j in range(len(self)) if jobs is None else jobs:
      type_name, _, uniform = self.locate(j)
      out[type_name]["jobs"] += 1
      out[type_name]["uniform"] += uniform
    return out
