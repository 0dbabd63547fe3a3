"""NAFNet-16 train step and inference: jaxdeg (jitted, donated state) vs the same network in
PyTorch eager (benchmarks/peers/torch_nafnet.py), CPU, same thread count, same run.

NAFNet-16 = width 16, enc [2,2,4,8], middle 12, dec [2,2,2,2] (the SIDD layout at half width,
7.3 M parameters). Train step = forward + L1 loss + backward + Adam update. Timings are
interleaved (ours, peer, ours, ...), so both sides see the same load, and each side reports its
median step with the range (benchmarks/timing.py). Compilation is excluded (reported in the notes).
"""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import timing
from jaxdeg.models.restore import NAFNet

CFG = dict(width=16, enc_blocks=(2, 2, 4, 8), middle_blocks=12, dec_blocks=(2, 2, 2, 2))
SIZE, BATCH = 128, 8


def _jax_steps():
  model = NAFNet(**CFG)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(BATCH, SIZE, SIZE, 3)), jnp.float32)
  y = jnp.asarray(rng.uniform(size=(BATCH, SIZE, SIZE, 3)), jnp.float32)
  # numpy-filled parameters: jitting model.init compiles a PRNG kernel per parameter shape,
  # minutes on a small CPU, and is not what is measured here
  shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), x))["params"]
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.02, s.shape), s.dtype), shapes)
  tx = optax.adam(1e-4)
  state = (params, tx.init(params))

  @jax.jit
  def infer(p, x):
    return model.apply({"params": p}, x)

  @jax.jit
  def train(state, x, y):
    p, opt = state
    loss, g = jax.value_and_grad(lambda p: jnp.mean(jnp.abs(model.apply({"params": p}, x) - y)))(p)
    upd, opt = tx.update(g, opt, p)
    return (optax.apply_updates(p, upd), opt), loss

  train_d = jax.jit(train.__wrapped__, donate_argnums=0)
  box = {"state": state}

  def train_step():
    box["state"], loss = train_d(box["state"], x, y)
    jax.block_until_ready(loss)

  def infer_step():
    jax.block_until_ready(infer(box["state"][0], x))

  return train_step, infer_step


def _torch_steps():
  import torch

  from benchmarks.peers.torch_nafnet import NAFNet as TorchNAFNet
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  model = TorchNAFNet(3, CFG["width"], CFG["middle_blocks"], CFG["enc_blocks"], CFG["dec_blocks"])
  x = torch.rand(BATCH, 3, SIZE, SIZE)
  y = torch.rand(BATCH, 3, SIZE, SIZE)
  opt = torch.optim.Adam(model.parameters(), lr=1e-4)

  def train_step():
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.l1_loss(model(x), y)
    loss.backward()
    opt.step()

  def infer_step():
    model.eval()
    with torch.inference_mode():
      model(x)

  return train_step, infer_step, f"PyTorch {torch.__version__} eager ({torch.get_num_threads()} threads)"


def run(quick: bool):
  reps = 4 if quick else 15
  j_train, j_infer = _jax_steps()
  try:
    t_train, t_infer, peer_name = _torch_steps()
  except ImportError:
    t_train = t_infer = None
    peer_name = "PyTorch (not installed)"
  rows = []
  for what, ours, peer in (("train step (Adam, L1)", j_train, t_train), ("inference", j_infer, t_infer)):
    compile_s = timing.seconds(ours)  # first call compiles
    if peer is not None:
      peer()  # warm caches
    t_ours, t_peer = timing.interleaved(ours, peer, reps=reps)
    rows.append({
        "figure": f"NAFNet-16 {what}, {SIZE}², batch {BATCH}, CPU",
        **timing.figures(BATCH, t_ours, t_peer), "peer_name": peer_name, "unit": "images/s", "higher_is_better": True,
        "notes": (f"same architecture and sizes (7.3 M params); jaxdeg jitted (compile {compile_s:.0f} s, "
                  f"excluded), {reps} interleaved steps each"),
    })
  return rows
