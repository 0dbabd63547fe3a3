"""Fréchet Inception Distance from feature batches, as pytorch-fid computes it.

  inception = perceptual.load_inception("pt_inception-2015-12-05-6726825d.pth")
  fid = FidAccumulator()
  for real, fake in batches:
    fid.add(inception(real), inception(fake))
  fid.result()

The statistics stream: a float64 running sum and sum of outer products on the host, so the
evaluation set can be any size and batches come one at a time. Mean and covariance (unbiased,
as np.cov) are those of all the rows added; the distance is pytorch-fid's
`calculate_frechet_distance`, its matrix square root's trace taken through symmetric
eigendecompositions (or, with method='sqrtm', exactly its path: scipy's sqrtm, the eps-offset retry
for a singular product, real part). With fewer rows than dimensions on both sides (small evaluation
sets, per-group FIDs) the same distance is computed exactly from the rows themselves: the nonzero
eigenvalues of Σ1 Σ2 are those of (A1 A2ᵀ)(A1 A2ᵀ)ᵀ / ((n1 − 1)(n2 − 1)) for the centred rows A, so
tr √(Σ1 Σ2) is the nuclear norm of A1 A2ᵀ, an n1 × n2 SVD instead of D × D eigendecompositions.
"""
import logging

import numpy as np
from scipy import linalg

from jaxdeg.errors import UserError

log = logging.getLogger(__name__)


class FeatureStats:
  """Running mean and covariance of (N, D) feature rows."""

  def __init__(self, dim=None):
    self.dim = dim
    self.count = 0
    self._shift = None  # the first batch's mean: sums of shifted rows lose less to cancellation
    self._sum = None
    self._outer = None
    self._rows = []  # the shifted rows themselves, while there are fewer than D (the low-rank path)

  def add(self, features):
    f = np.asarray(features, np.float64)
    if f.ndim != 2:
      raise UserError(f"FID features: expected a (N, D) array, got shape {f.shape}")
    if self.dim is None:
      self.dim = f.shape[1]
    if f.shape[1] != self.dim:
      raise UserError(f"FID features: got {f.shape[1]} per row, earlier batches had {self.dim}")
    if not f.shape[0]:
      return self
    if not np.all(np.isfinite(f)):
      raise UserError("FID features: the batch holds NaN or infinite values")
    if self._shift is None:
      self._shift = f.mean(axis=0)
      self._sum = np.zeros(self.dim)
    f = f - self._shift
    self._sum += f.sum(axis=0)
    self.count += f.shape[0]
    if self._rows is not None and self.count < self.dim:
      self._rows.append(f)  # the D × D sums wait until there are D rows
      return self
    if self._outer is None:
      self._outer = sum((r.T @ r for r in self._rows or ()), np.zeros((self.dim, self.dim)))
      self._rows = None
    self._outer += f.T @ f
    return self

  def centred_rows(self):
    """(N, D) rows minus their mean while N < D, else None."""
    if self._rows is None:
      return None
    rows = np.concatenate(self._rows)
    return rows - rows.mean(axis=0)

  def _check(self, what):
    if self.count < 2:
      raise UserError(f"FID: {what} needs at least 2 feature rows for a covariance, got {self.count}")

  def mean(self):
    self._check("the mean")
    return self._shift + self._sum / self.count

  def cov(self):
    """Unbiased covariance (D, D), as np.cov(features, rowvar=False)."""
    self._check("the covariance")
    centred = self._sum / self.count
    outer = self._outer if self._rows is None else sum(r.T @ r for r in self._rows)
    cov = (outer - self.count * np.outer(centred, centred)) / (self.count - 1)
    return (cov + cov.T) / 2  # exactly symmetric, whatever the rounding of the sums


def _trace_sqrt_product(sigma1, sigma2):
  """tr √(Σ1 Σ2) as the sum of √λ over the eigenvalues of √Σ1 Σ2 √Σ1 (symmetric PSD, the same
  eigenvalues as Σ1 Σ2): two symmetric eigendecompositions, where scipy's sqrtm needs a complex
  Schur form (≈ 10× slower at 2048²: tens of seconds per distance on a small CPU)."""
  w, v = np.linalg.eigh(sigma1)
  root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
  return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root @ sigma2 @ root), 0.0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6, method="eigh"):
  """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 √(Σ1 Σ2)), pytorch-fid's calculate_frechet_distance.

  method: 'eigh' (default) computes the trace through symmetric eigendecompositions (equal to
  pytorch-fid's value to rounding, much faster); 'sqrtm' is pytorch-fid's own path (scipy's sqrtm,
  retried with `eps` on the diagonals when the product is singular)."""
  if method not in ("eigh", "sqrtm"):
    raise UserError(f"frechet_distance: method must be 'eigh' or 'sqrtm', got {method!r}")
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
    raise UserError(f"frechet_distance: mismatched statistics, means {mu1.shape} and {mu2.shape}, "
                    f"covariances {sigma1.shape} and {sigma2.shape}")
  diff = mu1 - mu2
  if method == "eigh":
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * _trace_sqrt_product(sigma1, sigma2))
  covmean = linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    log.warning("FID: singular product of covariances; adding %g to their diagonals", eps)
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    # rounding gives a small imaginary part; a large one means the statistics are broken
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise UserError(f"frechet_distance: √(Σ1 Σ2) has an imaginary part up to {np.max(np.abs(covmean.imag)):.3g}")
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class FidAccumulator:
  """FID between the real and the fake features added so far (pytorch-fid uses 2048-d pool3)."""

  def __init__(self, dim=None):
    self.real = FeatureStats(dim)
    self.fake = FeatureStats(dim)

  def add(self, real_features=None, fake_features=None):
    """Adds a (N, D) batch to either side or both (the sides may get different numbers of rows)."""
    if real_features is not None:
      self.real.add(real_features)
    if fake_features is not None:
      self.fake.add(fake_features)
    return self

  def result(self):
    for name, stats in (("real", self.real), ("fake", self.fake)):
      if stats.count < 2:
        raise UserError(f"FID: needs at least 2 {name} feature rows, got {stats.count}")
    if self.real.dim != self.fake.dim:
      raise UserError(f"FID: real features have {self.real.dim} values per row, fake ones {self.fake.dim}")
    a1, a2 = self.real.centred_rows(), self.fake.centred_rows()
    if a1 is None or a2 is None:
      return frechet_distance(self.real.mean(), self.real.cov(), self.fake.mean(), self.fake.cov())
    diff = self.real.mean() - self.fake.mean()
    n1, n2 = len(a1) - 1, len(a2) - 1
    trace_sqrt = np.sum(np.linalg.svd(a1 @ a2.T, compute_uv=False)) / np.sqrt(n1 * n2)
    return float(diff @ diff + np.sum(a1 * a1) / n1 + np.sum(a2 * a2) / n2 - 2 * trace_sqrt)
