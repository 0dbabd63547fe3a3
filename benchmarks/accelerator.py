"""The accelerator run: every workload on this machine's first device, in one go, rows tagged with it.

  benchmarks/accelerator.sh [--dry-run]       installs what the image lacks, then runs this module
  python -m benchmarks.accelerator [--dry-run]

Workloads, all at the CPU benchmarks' sizes so figures compare across machines:
  - procedural degradations batched on the device: one jitted call on 32 images of 256² with
    per-image intensities (as the restore task applies them), every type;
  - train steps of the restorer (NAFNet-16, 128², batch 8), the universal degradation model (paper
    sizes, 128², batch 8) and GenDeg's UNet (SD-1.x layout at reduced width, latents 16², batch 2),
    each with its model-FLOP utilisation (XLA's FLOP count of the step / time / the chip's peak);
  - GenDeg sampling (50 Euler-ancestral steps, dual guidance, same UNet);
  - the data pipeline (grain, JPEG decode + crop + noise, 2 workers).
The restorer step has PyTorch on the same device beside it when torch sees one.
--dry-run shrinks every size (a CPU smoke run of the same code, a minute or two). Rows go to
benchmarks/results/accelerator.json and BENCHMARKS.md (a dry run only prints them).
"""
import argparse
import json
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import run as runner
from benchmarks import timing
from jaxdeg import host_memory

# Dense bf16 peak FLOP/s per chip, by the start of jax's device_kind (public spec sheets). MFU is
# reported against it, also for float32 steps, so it reads as "fraction of what the chip can do".
PEAKS = {"NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12, "TPU v5 lite": 197e12,
         "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v4": 275e12, "TPU v6": 918e12}


def peak_flops(device):
  return next((v for k, v in PEAKS.items() if device.device_kind.startswith(k)), None)


def _numpy_params(model, *inputs):
  """Parameters filled from numpy: jitting model.init compiles a random-number kernel per
  parameter, which is not what is measured."""
  rng = np.random.default_rng(0)
  shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), *inputs))["params"]
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.02, s.shape), s.dtype), shapes)


def train_step_row(figure, model, inputs, target, reps, peer=None, peer_name=None):
  """An Adam step on an L1 loss of `model(*inputs)` against `target`, timed with its MFU."""
  params = _numpy_params(model, *inputs)
  tx = optax.adam(1e-4)

  def step(state, inputs, target):
    p, opt = state
    loss, g = jax.value_and_grad(lambda p: jnp.mean(jnp.abs(model.apply({"params": p}, *inputs) - target)))(p)
    upd, opt = tx.update(g, opt, p)
    return (optax.apply_updates(p, upd), opt), loss

  jitted = jax.jit(step, donate_argnums=0)
  box = {"state": (params, tx.init(params))}
  flops = timing.xla_flops(jitted, box["state"], inputs, target)

  def ours():
    box["state"], loss = jitted(box["state"], inputs, target)
    jax.block_until_ready(loss)

  compile_s = timing.seconds(ours)
  if peer is not None:
    peer()  # warm-up
  t_ours, t_peer = timing.interleaved(ours, peer, reps=reps)
  batch = target.shape[0]
  return {"figure": figure, **timing.figures(batch, t_ours, t_peer), "unit": "images/s", "higher_is_better": True,
          "peer_name": peer_name or "—", "flops": flops / batch if flops else None,
          "notes": f"jaxdeg compile {compile_s:.0f} s excluded; {reps} interleaved steps"}


def degradation_rows(size, batch, reps):
  from benchmarks.bench_degrade import photos
  from jaxdeg import degrade
  imgs = jax.device_put(photos()[:batch, :size, :size])
  intensities = jax.device_put(((np.arange(batch) + 0.5) / batch).astype(np.float32))
  rows = []
  for name in degrade.available():
    fn = jax.jit(lambda k, x, t, name=name: degrade.apply(k, x, name, t)[0])
    keys = iter(range(10**6))
    call = lambda fn=fn: jax.block_until_ready(fn(jax.random.key(next(keys)), imgs, intensities))  # noqa: E731
    compile_s = timing.seconds(call)
    (t,) = timing.interleaved(call, reps=reps)
    rows.append({"figure": f"{name} pairs/s on the device, {size}², batch {batch}, per-image intensities",
                 **timing.figures(batch, t, None), "unit": "pairs/s", "higher_is_better": True, "peer_name": "—",
                 "notes": f"one jitted call per batch; compile {compile_s:.1f} s excluded"})
  return rows


def restore_rows(size, batch, reps, small):
  from benchmarks.bench_restore import CFG
  from jaxdeg.models.restore import NAFNet
  cfg = dict(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1)) if small else CFG
  rng = np.random.default_rng(0)
  x, y = (jnp.asarray(rng.uniform(size=(batch, size, size, 3)), jnp.float32) for _ in range(2))
  peer, peer_name = _torch_nafnet_peer(cfg, np.asarray(x), np.asarray(y))
  return [train_step_row(f"NAFNet-{cfg['width']} train step (Adam, L1), {size}², batch {batch}", NAFNet(**cfg),
                         (x,), y, reps, peer, peer_name)]


def _torch_nafnet_peer(cfg, x, y):
  """The same NAFNet step in PyTorch on the device torch sees (CUDA), or none on a CPU run."""
  try:
    import torch

    from benchmarks.peers.torch_nafnet import NAFNet as TorchNAFNet
  except ImportError:
    return None, None
  if not torch.cuda.is_available():
    return None, None
  dev = torch.device("cuda")
  model = TorchNAFNet(3, cfg["width"], cfg["middle_blocks"], cfg["enc_blocks"], cfg["dec_blocks"]).to(dev)
  tx, ty = (torch.from_numpy(a.transpose(0, 3, 1, 2).copy()).to(dev) for a in (x, y))
  opt = torch.optim.Adam(model.parameters(), lr=1e-4)

  def step():
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.l1_loss(model(tx), ty).backward()
    opt.step()
    torch.cuda.synchronize()

  return step, f"PyTorch {torch.__version__} eager on {torch.cuda.get_device_name(0)}"


def cdd_rows(size, batch, reps, small):
  """bench_cdd's step (generator + encoders + compressors, L1 + rates + aux loss, Adam) at the
  paper's sizes, or small ones for a dry run."""
  from benchmarks.bench_cdd import jax_step
  kwargs = dict(global_dim=32, generator_width=16) if small else {}
  step, params, flops = jax_step(size, batch, **kwargs)
  compile_s = timing.seconds(step)
  (times,) = timing.interleaved(step, reps=reps)
  return [{"figure": f"universal degradation model train step (generator + encoders + compressors, Adam), "
                     f"{size}², batch {batch}", **timing.figures(batch, times, None), "unit": "images/s",
           "higher_is_better": True, "peer_name": "—", "flops": flops / batch if flops else None,
           "notes": f"{params / 1e6:.2f} M parameters; compile {compile_s:.0f} s excluded; {reps} steps"}]


def ldm_rows(latent, batch, reps, small):
  from benchmarks import bench_ldm
  from jaxdeg.diffusion import euler_ancestral, guidance, make_schedule
  from jaxdeg.models.ldm.unet import UNet
  unet = dict(bench_ldm.UNET)
  if small:
    unet.update(block_out_channels=(32, 32, 64), norm_num_groups=8, cross_attention_dim=32)
  model = UNet(**_unet_kwargs(unet))
  rng = np.random.default_rng(0)
  ctx_dim = unet["cross_attention_dim"]
  x = jnp.asarray(rng.normal(size=(batch, latent, latent, 8)), jnp.float32)
  t = jnp.asarray(rng.integers(0, 1000, batch), jnp.float32)
  ctx = jnp.asarray(rng.normal(size=(batch, 77, ctx_dim)), jnp.float32)
  target = jnp.asarray(rng.normal(size=(batch, latent, latent, 4)), jnp.float32)
  rows = [train_step_row(f"GenDeg UNet train step (L1 on ε, Adam), latents {latent}², batch {batch}",
                         model, (x, t, ctx), target, reps)]
  params = _numpy_params(model, x, t, ctx)
  steps = 5 if small else bench_ldm.STEPS

  @jax.jit
  def sample(p, key):
    def apply_fn(z, tt, cond):
      img, c = cond
      return model.apply({"params": p}, jnp.concatenate([z, img], -1), jnp.broadcast_to(tt, (z.shape[0],)), c)
    image = x[..., 4:]
    fn = guidance.dual(apply_fn, (image, ctx), (image, 0 * ctx), (jnp.zeros_like(image), 0 * ctx),
                       bench_ldm.TEXT_SCALE, bench_ldm.IMAGE_SCALE)
    return euler_ancestral(fn, target, key, make_schedule(), steps)

  call = lambda: jax.block_until_ready(sample(params, jax.random.key(1)))  # noqa: E731
  compile_s = timing.seconds(call)
  (times,) = timing.interleaved(call, reps=reps)
  rows.append({"figure": f"GenDeg sampling, {steps} Euler-ancestral steps, dual guidance, latents {latent}², "
                         f"batch {batch}", **timing.figures(batch, times, None), "unit": "images/s",
               "higher_is_better": True, "peer_name": "—", "notes": f"compile {compile_s:.0f} s excluded"})
  return rows


def _unet_kwargs(unet):
  from jaxdeg.interop import diffusers as imp
  return imp.unet_kwargs(dict(unet, in_channels=8, out_channels=4, sample_size=16), in_channels=8)


def data_rows(small):
  import tempfile

  from benchmarks import bench_data
  with tempfile.TemporaryDirectory() as folder:
    bench_data.write_jpegs(folder, count=8 if small else bench_data.FILES)
    batches, chunks = (2, 2) if small else (10, 4)
    times, _ = bench_data.ours(folder, 2, batches, chunks)
  return [{"figure": f"data pipeline pairs/s, {bench_data.CROP}² crops + Gaussian noise, batch {bench_data.BATCH}, "
                     "2 grain workers", **timing.figures(batches * bench_data.BATCH, times, None), "unit": "pairs/s",
           "higher_is_better": True, "peer_name": "—",
           "notes": f"JPEG decode, crop and degradation on the host's CPU cores; {chunks} chunks of {batches} batches"}]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dry-run", action="store_true", help="shrink every size: a CPU smoke run of the same code")
  args = p.parse_args(argv)
  small = args.dry_run
  reused_memory = host_memory.reuse_freed_memory()  # before the backend starts its threads
  device = jax.devices()[0]
  peak = peak_flops(device)
  reps = 2 if small else 10
  workloads = [
      ("degradations", lambda: degradation_rows(64 if small else 256, 4 if small else 32, reps)),
      ("restore", lambda: restore_rows(32 if small else 128, 2 if small else 8, reps, small)),
      ("cdd", lambda: cdd_rows(32 if small else 128, 2 if small else 8, reps, small)),
      ("ldm", lambda: ldm_rows(8 if small else 16, 2, reps, small)),
      ("data", lambda: data_rows(small)),
  ]
  machine = f"{runner.machine_description(reused_memory)}; device {device.device_kind}"
  command = "benchmarks/accelerator.sh" + (" --dry-run" if small else "")
  rows, start = [], time.monotonic()
  for name, make in workloads:
    print(f"== {name} ({time.monotonic() - start:.0f} s in)", flush=True)
    with runner.Conditions() as conditions:
      new = make()
    for r in new:
      if r.get("flops") and peak:
        r["notes"] += f"; MFU {r['flops'] * r['ours'] / peak:.1%} of {peak / 1e12:.0f} TFLOP/s"
      r.update(machine=machine, command=command, date=time.strftime("%Y-%m-%d"), **conditions.fields())
      print(f"  {r['figure']}: {runner.measured(r, 'ours')}"
            + (f" vs {runner.measured(r, 'peer')}" if r.get("peer") else ""), flush=True)
    rows.extend(new)
  print(f"total {time.monotonic() - start:.0f} s", flush=True)
  if small:  # a smoke run's figures never reach BENCHMARKS.md
    print(json.dumps(rows, indent=1))
  else:
    runner.RESULTS.mkdir(exist_ok=True)
    (runner.RESULTS / "accelerator.json").write_text(json.dumps(rows, indent=1))
    runner.write_markdown()
  return rows


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  main()
