"""The global and the local compressor switch on and off separately (the official netCprs.enabled
and netCprs_loc.enabled): each switch changes its own rate term and embedding, nothing else."""
import jax
import numpy as np
import pytest

pytest.importorskip("torch")

from jaxdeg.interop import cdd_torch  # noqa: E402
from jaxdeg.models.cdd import DegradationModel  # noqa: E402
from tests.tasks.cdd.official_checkpoint import tiny_parts  # noqa: E402


def test_each_switch_changes_only_its_own_rate_term():
  # weights from an official-layout checkpoint: host arrays, no init program to compile
  parts = cdd_torch.checkpoint_parts({k: m.state_dict() for k, m in tiny_parts().items()})
  full, variables = cdd_torch.import_parts(parts)
  models = (full, full.clone(compress_global=False), full.clone(compress_local=False))
  y = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)

  @jax.jit  # one program, three ways
  def embeddings(variables, y):
    out = []
    for model in models:
      dropped = {name for name, on in (("global_compressor", model.compress_global),
                                       ("local_compressor", model.compress_local)) if not on}
      v = {col: {k: t for k, t in tree.items() if k not in dropped} for col, tree in variables.items()}
      out.append(model.apply(v, y, False, method=DegradationModel.embed))
    return out

  both, no_global, no_local = embeddings(variables, y)
  print(f"rates (global, local): both {float(both.rate_global):.3f}, {float(both.rate_local):.3f}; "
        f"global off {float(no_global.rate_global):.3f}, {float(no_global.rate_local):.3f}; "
        f"local off {float(no_local.rate_global):.3f}, {float(no_local.rate_local):.3f}")
  assert float(both.rate_global) > 0 and float(both.rate_local) > 0
  # global off: its rate and aux loss are 0, its embedding is the code; the local side is untouched
  assert float(no_global.rate_global) == float(no_global.aux_loss) == 0.0
  np.testing.assert_array_equal(no_global.global_embedding, no_global.global_code)
  assert np.abs(np.asarray(both.global_embedding) - np.asarray(both.global_code)).max() > 1e-3
  assert float(no_global.rate_local) == float(both.rate_local)
  np.testing.assert_array_equal(no_global.local_embedding, both.local_embedding)
  # local off: the mirror image
  assert float(no_local.rate_local) == 0.0
  assert float(no_local.rate_global) == float(both.rate_global) and float(no_local.aux_loss) == float(both.aux_loss)
  np.testing.assert_array_equal(no_local.global_embedding, both.global_embedding)
  assert np.abs(np.asarray(no_local.local_embedding) - np.asarray(both.local_embedding)).max() > 1e-3
