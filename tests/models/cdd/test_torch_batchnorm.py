"""The encoders' BatchNorm follows torch's BatchNorm2d: the running variance takes the unbiased
batch variance with momentum 0.1, so fine-tuning an imported model keeps the official statistics."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxdeg.models.cdd.norm import TorchBatchNorm  # noqa: E402


def test_running_statistics_follow_torch_batchnorm2d():
  rng = np.random.default_rng(0)
  c = 5
  bn_t = torch.nn.BatchNorm2d(c).train()
  with torch.no_grad():
    bn_t.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, c), dtype=torch.float32))
    bn_t.bias.copy_(torch.tensor(rng.normal(size=c), dtype=torch.float32))
  bn_j = TorchBatchNorm()
  variables = {"params": {"scale": bn_t.weight.detach().numpy(), "bias": bn_t.bias.detach().numpy()},
               "batch_stats": {"mean": np.zeros(c, np.float32), "var": np.ones(c, np.float32)}}
  step = jax.jit(lambda v, x: bn_j.apply(v, x, True, mutable=["batch_stats"]))
  flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  flax_stats = {"mean": np.zeros(c, np.float32), "var": np.ones(c, np.float32)}
  for i in range(6):  # several steps, small batches (n/(n-1) matters most there), shifted statistics
    x = (rng.normal(size=(2, 3, 4, c)) * (1 + 0.2 * i) + 0.5 * i).astype(np.float32)
    y_j, updates = step(variables, x)
    variables = {**variables, "batch_stats": updates["batch_stats"]}
    y_t = bn_t(torch.tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()
    np.testing.assert_allclose(y_j, y_t, atol=1e-5)
    _, flax_updates = flax_bn.apply({"params": variables["params"], "batch_stats": flax_stats}, x,
                                    mutable=["batch_stats"])
    flax_stats = flax_updates["batch_stats"]
  mean_err = np.abs(np.asarray(variables["batch_stats"]["mean"]) - bn_t.running_mean.numpy()).max()
  var_err = np.abs(np.asarray(variables["batch_stats"]["var"]) - bn_t.running_var.numpy()).max()
  flax_var_err = np.abs(np.asarray(flax_stats["var"]) - bn_t.running_var.numpy()).max()
  print(f"after 6 steps: |Δ running mean| {mean_err:.2e}, |Δ running var| {var_err:.2e}; "
        f"flax BatchNorm's running var is off by {flax_var_err:.3f}")
  assert mean_err <= 1e-6 and var_err <= 1e-6
  assert flax_var_err > 1e-2  # the biased update really is different: the test can tell them apart
  # inference uses the running statistics
  x = rng.normal(size=(1, 3, 4, c)).astype(np.float32)
  y_eval = bn_j.apply(variables, jnp.asarray(x), False)
  expected = bn_t.eval()(torch.tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()
  np.testing.assert_allclose(y_eval, expected, atol=1e-5)
