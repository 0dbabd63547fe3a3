"""The universal degradation model's generator + encoders + compressors train step: jaxdeg (jitted,
donated state) vs the same layers in PyTorch eager (benchmarks/peers/torch_cdd.py, the reference
the weight importer is tested against), CPU, same thread count, same run.

Paper sizes (generator 11.7 M, HDEN 1.06 M, IDEN 1.15 M, compressors; 14.5 M parameters), 128²,
batch 8, random init. Step = embed the degraded image (BatchNorm in training mode, compressors with
training noise) + generator + L1 + rate and auxiliary terms + backward + Adam. The critic and MoCo
are not part of it. Timings are interleaved (ours, peer, ours, ...), each side's median with its
range, as in bench_restore.py.
XLA:CPU's own kernel gradients of these convolutions are several times slower than their forward
passes; jaxdeg.models.layers takes them as matmuls on CPU (Conv: stride 1, ConvTranspose: all).
"""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import timing
from jaxdeg.models.cdd import DegradationModel

SIZE, BATCH = 128, 8
RATE_WEIGHT = 0.01


def _param_count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _filled(shapes, rng):
  """Parameters filled from numpy (jitting model.init compiles a PRNG kernel per shape, minutes
  on a small CPU, and is not what is measured): N(0, 0.02), BatchNorm scales 1, variances 1."""
  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if name.endswith("['scale']") or name.endswith("['var']"):
      return jnp.ones(s.shape, s.dtype)
    if name.endswith("['mean']"):
      return jnp.zeros(s.shape, s.dtype)
    return jnp.asarray(rng.normal(0, 0.02, s.shape), s.dtype)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def jax_step(size=SIZE, batch=BATCH, **model_kwargs):
  """(step(), parameter count, FLOPs per step) of jaxdeg's train step at the paper's sizes (or
  `model_kwargs`), state donated between steps."""
  model = DegradationModel(**model_kwargs)
  rng = np.random.default_rng(0)
  x, y = (jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 3)), jnp.float32) for _ in range(2))
  keys = {"params": jax.random.key(0), "noise": jax.random.key(1)}
  variables = _filled(nn.unbox(jax.eval_shape(lambda: model.init(keys, x, y))), rng)
  tx = optax.adam(1e-4, eps=1e-3)
  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]), jax.random.key(2))

  def loss_fn(params, batch_stats, key):
    k_noise, k_quantize = jax.random.split(key)
    (y_hat, emb), updates = model.apply({"params": params, "batch_stats": batch_stats}, x, y, True,
                                        rngs={"noise": k_noise, "quantize": k_quantize}, mutable=["batch_stats"])
    loss = jnp.mean(jnp.abs(y_hat - y)) + RATE_WEIGHT * (emb.rate_global + emb.rate_local) + emb.aux_loss
    return loss, updates["batch_stats"]

  def train(state):
    params, batch_stats, opt, key = state
    key, step_key = jax.random.split(key)
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, step_key)
    updates, opt = tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), batch_stats, opt, key), loss

  train = jax.jit(train, donate_argnums=0)
  flops = timing.xla_flops(train, state)
  box = {"state": state}

  def step():
    box["state"], loss = train(box["state"])
    jax.block_until_ready(loss)

  return step, _param_count(variables["params"]), flops


def _torch_step():
  import torch

  from benchmarks.peers import torch_cdd as ref
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  parts = {"netE": ref.LPE(256, 256), "netE_loc": ref.LPEL(256, 4), "netG": ref.BasicWrapper(64, 8, 4, 256),
           "netCprs": ref.GlobalCompressor(256), "netCprs_loc": ref.LocalCompressor(64, 4)}
  model = ref.use_training_noise(torch.nn.ModuleDict(parts)).train()
  x, y = (torch.rand(BATCH, 3, SIZE, SIZE) * 2 - 1 for _ in range(2))
  opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-3)

  def step():
    opt.zero_grad(set_to_none=True)
    code, _ = model["netE"](y)
    e_g, _, bits_g = model["netCprs"](code)
    e_l, _ = model["netE_loc"](y)
    e_l, _, bits_l = model["netCprs_loc"](e_l)
    y_hat = model["netG"](x, e_g, e_l)
    loss = (torch.nn.functional.l1_loss(y_hat, y) + RATE_WEIGHT * (bits_g.mean() + bits_l)
            + model["netCprs"].model.loss())
    loss.backward()
    opt.step()

  count = sum(p.numel() for p in model.parameters())
  return step, count, f"PyTorch {torch.__version__} eager ({torch.get_num_threads()} threads)"


def run(quick: bool):
  reps = 3 if quick else 6
  ours, ours_params, _ = jax_step()
  compile_s = timing.seconds(ours)  # the first call compiles
  try:
    peer, peer_params, peer_name = _torch_step()
    peer()  # warm caches
  except ImportError:
    peer, peer_params, peer_name = None, None, "PyTorch (not installed)"
  t_ours, t_peer = timing.interleaved(ours, peer, reps=reps)
  same = "" if peer_params is None else f", PyTorch {peer_params / 1e6:.2f} M"
  return [{
      "figure": f"universal degradation model train step (generator + encoders + compressors, Adam), "
                f"{SIZE}², batch {BATCH}, CPU",
      **timing.figures(BATCH, t_ours, t_peer), "peer_name": peer_name, "unit": "images/s", "higher_is_better": True,
      "notes": (f"paper sizes, {ours_params / 1e6:.2f} M parameters{same}; L1 + rates + aux loss, training "
                f"noise in the compressors, BatchNorm in training mode; jaxdeg jitted (compile {compile_s:.0f} s, "
                f"excluded), {reps} interleaved steps each"),
  }]
