"""Official-checkpoint import (`jaxdeg.interop.cdd_torch`) against the independent PyTorch
reference in `benchmarks/peers/torch_cdd.py`: every part's output matches within 1e-4 (fp32).

The generator's only randomness is the z channel of each IDA-SFT layer: the JAX model sows every
z it draws ('intermediates'), and the reference is fed the same tensors in call order.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxdeg.interop import cdd_torch  # noqa: E402
from jaxdeg.interop.cdd_torch import WeightImportError  # noqa: E402
from jaxdeg.models.cdd import HDEN, DegradationModel  # noqa: E402
from benchmarks.peers import torch_cdd as ref  # noqa: E402

BLOCKS = (1, 1, 1, 1, 1)  # shallow for speed; the full-size test below checks the (4, 3, 2, 3, 4) names
STAGES = ("enc1", "enc2", "mid", "dec2", "dec1")
TOL = 1e-4


def small_parts(seed=0):
  torch.manual_seed(seed)
  return {"netE": ref.perturb(ref.LPE(64, 64), 1), "netE_loc": ref.perturb(ref.LPEL(64, 4), 2),
          "netG": ref.perturb(ref.BasicWrapper(16, 8, 4, 64, BLOCKS), 3),
          "netCprs": ref.perturb(ref.GlobalCompressor(64), 4),
          "netCprs_loc": ref.perturb(ref.LocalCompressor(16, 4), 5),
          "netP": ref.perturb(ref.DiscriminatorLinear(3, ndf=4, in_width=32), 6)}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
  parts = small_parts()
  path = tmp_path_factory.mktemp("cdd") / "latest.pt"
  torch.save({"model": {k: m.state_dict() for k, m in parts.items()}, "epoch": 1, "global_step": 7}, path)
  model, variables, critic = cdd_torch.import_checkpoint(path, with_critic=True)
  rng = np.random.default_rng(0)
  x, y = (rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32) for _ in range(2))
  return parts, model, variables, critic, x, y


def sown_noise_in_call_order(intermediates):
  g = intermediates["generator"]
  return [g[f"{stage}_{i}"][sft]["noise"][0] for stage, n in zip(STAGES, BLOCKS) for i in range(n)
          for sft in ("sft1", "sft2")]


def test_imported_model_matches_the_reference(imported):
  parts, model, variables, _, x, y = imported
  # fields read off the checkpoint's shapes
  assert model.official_input_scaling and model.encoder_dim == 64 and model.generator_width == 16
  assert model.generator_blocks == BLOCKS and model.local_latent == 16

  @jax.jit  # one compile: evaluation, and the global encoder with batch statistics (MoCo training)
  def run(v, x, y):
    out = model.apply(v, x, y, rngs={"noise": jax.random.key(0, impl="rbg")}, mutable=["intermediates"])
    code_train, _ = model.apply(v, y, True, method=DegradationModel.encode_global, mutable=["batch_stats"])
    return out, code_train

  ((y_hat, emb), state), code_train = run(variables, x, y)
  with torch.no_grad():
    code, _ = parts["netE"](ref.nchw(y))
    e_g, _, bits_g = parts["netCprs"](code)
    e_l, _ = parts["netE_loc"](ref.nchw(y))
    e_l, _, bits_l = parts["netCprs_loc"](e_l)
    parts["netG"].feed.queue = [ref.nchw(z) for z in sown_noise_in_call_order(state["intermediates"])]
    y_ref = parts["netG"](ref.nchw(x), e_g, e_l)
    assert not parts["netG"].feed.queue  # every sown z consumed: same number of layers, same order
    code_ref_train, _ = parts["netE"].train()(ref.nchw(y))
    parts["netE"].eval()
  np.testing.assert_allclose(emb.global_code, code.numpy(), atol=TOL)
  np.testing.assert_allclose(code_train, code_ref_train.numpy(), atol=TOL)
  np.testing.assert_allclose(emb.global_embedding, e_g.numpy(), atol=TOL)
  np.testing.assert_allclose(emb.local_embedding, ref.nhwc(e_l), atol=TOL)
  np.testing.assert_allclose(emb.rate_global, bits_g.mean().item(), rtol=1e-5)
  np.testing.assert_allclose(emb.rate_local, bits_l.item(), rtol=1e-5)
  np.testing.assert_allclose(emb.aux_loss, parts["netCprs"].model.loss().item(), rtol=1e-5)
  np.testing.assert_allclose(y_hat, ref.nhwc(y_ref), atol=TOL)
  assert float(np.abs(y_hat).max()) > 1e-2  # a live output, not a trivially matching zero


def test_critic(imported):
  parts, _, _, (critic, params, size, strategy, channels), x, _ = imported
  assert size == 32 and critic.width == 4 and (strategy, channels) == ("unconditioned", 3)
  with torch.no_grad():
    expected = parts["netP"](ref.nchw(x)).numpy()
  np.testing.assert_allclose(jax.jit(critic.apply)({"params": params}, x), expected, atol=TOL)


def test_full_size_checkpoint_names_map_onto_the_paper_model():
  torch.manual_seed(0)
  modules = {"netE": ref.LPE(), "netE_loc": ref.LPEL(), "netG": ref.BasicWrapper(), "netCprs": ref.GlobalCompressor(),
             "netCprs_loc": ref.LocalCompressor()}
  parts = cdd_torch.checkpoint_parts({k: m.state_dict() for k, m in modules.items()})
  assert cdd_torch.model_kwargs(parts) == dict(
      global_dim=256, encoder_dim=256, encoder_kernel=3, local_dim=4, generator_width=64, cond_dim=8,
      generator_blocks=(4, 3, 2, 3, 4), use_ida=True, local_latent=64)  # the paper's model
  variables = cdd_torch.convert(parts, DegradationModel(official_input_scaling=True))  # raises on any misfit
  # every torch parameter landed somewhere (buffers are skipped or went to batch_stats)
  assert sum(a.size for a in jax.tree.leaves(variables["params"])) == sum(
      p.numel() for m in modules.values() for p in m.parameters())


def test_mismatches_are_named():
  sd = {k: v.numpy() for k, v in ref.LPE(16, 8).state_dict().items()}
  target = jax.eval_shape(HDEN(16, 8).init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  cdd_torch.convert_part(sd, cdd_torch.hden_rows(), target, "netE")  # fits as is
  broken = dict(sd)
  del broken["LPE_l.2.conv.weight"]
  broken["LPE_p.9.conv.weight"] = sd["LPE_p.0.conv.weight"]
  broken["last_mlp.0.weight"] = sd["last_mlp.0.weight"][:, :5]
  with pytest.raises(WeightImportError) as err:
    cdd_torch.convert_part(broken, cdd_torch.hden_rows(), target, "netE")
  msg = str(err.value)
  assert "params/short_range_2/conv/kernel" in msg and "missing" in msg
  assert "LPE_p.9.conv.weight" in msg and "unexpected" in msg
  assert "last_mlp.0.weight" in msg and "mismatch" in msg
  with pytest.raises(WeightImportError, match="not an official CDD checkpoint"):
    cdd_torch.checkpoint_parts({"state_dict": sd})
  with pytest.raises(WeightImportError, match="no .netG. part"):
    cdd_torch.convert({"netE": sd}, DegradationModel(encoder_dim=16, global_dim=8, generator_width=4,
                                                     generator_blocks=(1, 1, 1, 1, 1), compress_global=False,
                                                     compress_local=False))
  with pytest.raises(WeightImportError, match="no such file"):
    cdd_torch.load_checkpoint("/nonexistent/latest.pt")
