"""The authors' released weights end to end, on official-layout checkpoints of the `:tiny` model
(random init, built with the PyTorch reference): every critic strategy imports, `jaxdeg transfer
--weights` writes exactly what the Python API makes, fine-tuning starts from the imported
parameters, whole-frame film-grain statistics run in tiles, and bad input gets one line."""
import functools
import os

import flax.linen as nn
import jax
import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from jaxdeg import cdd_eval, cdd_grain_eval, cli, transfer  # noqa: E402
from jaxdeg.data.images import read_image  # noqa: E402
from jaxdeg.errors import ConfigError, UserError  # noqa: E402
from jaxdeg.interop import cdd_torch  # noqa: E402
from jaxdeg.tasks import cdd  # noqa: E402
from jaxdeg.train import trainer  # noqa: E402
from tests.tasks.cdd.official_checkpoint import save, tiny_parts  # noqa: E402
from tests.tasks.cdd.test_transfer import CONTENT, REFERENCE, photo  # noqa: E402
from tests.tasks.cdd.test_transfer import save as save_png  # noqa: E402
from tests.utils import load_config, max_abs_diff  # noqa: E402


@pytest.fixture(scope="module")
def official(tmp_path_factory):
  return save(tiny_parts(), tmp_path_factory.mktemp("official") / "latest.pt")


def quantised(image):  # jaxdeg's PNG writer
  return (np.clip(np.asarray(image), 0, 1) * 255 + 0.5).astype(np.uint8)


def jaxdeg(*args):
  return cli.main(["jaxdeg", "transfer", *map(str, args)])


def test_transfer_command_with_weights_is_the_python_api(official, tmp_path, capsys):
  save_png(tmp_path / "clean.png", photo("astronaut", CONTENT))
  save_png(tmp_path / "degraded.png", photo("coffee", REFERENCE, noise=0.1))
  model = transfer.load(official)
  assert model.model.official_input_scaling and model.step == 120
  x, y = (read_image(tmp_path / n) for n in ("clean.png", "degraded.png"))  # as the command reads them
  expected = np.asarray(model.transfer(x, y, key=3, samples=2))
  assert expected.std() > 0.01 and np.abs(expected[0] - expected[1]).max() > 1e-3  # live, noise-driven
  other = np.asarray(model.transfer(x, photo("chelsea", REFERENCE), key=3, samples=2))
  assert np.abs(other - expected).max() > 0.1  # and steered by the reference
  assert jaxdeg("--weights", official, "--content", tmp_path / "clean.png", "--reference", tmp_path / "degraded.png",
                tmp_path / "out.png", "--samples", 2, "--seed", 3) == 0
  assert "official checkpoint latest.pt (global step 120)" in capsys.readouterr().out
  for i in range(2):
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"out_{i}.png")), quantised(expected[i]))
  # folder mode
  for d in ("c", "r"):
    os.makedirs(tmp_path / d)
  os.rename(tmp_path / "clean.png", tmp_path / "c" / "a.png")
  os.rename(tmp_path / "degraded.png", tmp_path / "r" / "a.png")
  assert jaxdeg("--weights", official, "--content-dir", tmp_path / "c", "--reference-dir", tmp_path / "r",
                "--output-dir", tmp_path / "o") == 0
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o" / "a.png")),
                                quantised(model.transfer(x, y, key=0)))


@pytest.mark.parametrize("strategy", ["unconditioned", "conditioned", "patched"])
def test_every_critic_strategy_imports_and_fine_tuning_takes_it(tmp_path, strategy):
  crop = 128 if strategy == "patched" else 32
  parts = tiny_parts(strategy, crop)
  path = save(parts, tmp_path / "latest.pt")
  config = load_config(f"configs/cdd_film_grain.py:tiny,released={path}", critic__strategy=strategy, data__crop=crop)
  task = cdd.CddTask(config)
  abstract = nn.unbox(jax.eval_shape(task.init_state, jax.random.PRNGKey(0)))
  state = task.params_from_foreign_checkpoint(path, abstract)
  imported = cdd_torch.import_checkpoint(path, with_critic=True, critic_strategy=None if strategy == "unconditioned"
                                         else strategy)[2]
  assert (imported.strategy, imported.in_channels) == (strategy, views_channels(strategy))
  assert max_abs_diff(state.params["critic"], imported.params) == 0
  # the imported critic scores as the official module does
  side = imported.size
  u = np.random.default_rng(0).uniform(-1, 1, (2, side, side, imported.in_channels)).astype(np.float32)
  with torch.no_grad():
    expected = parts["netP"](torch.tensor(u).permute(0, 3, 1, 2)).numpy()
  got = score(imported.critic, state.params["critic"], u)
  print(f"{strategy}: critic {side}² × {imported.in_channels} ch, max |Δ| vs torch "
        f"{np.abs(got - expected).max():.1e}")
  np.testing.assert_allclose(got, expected, atol=1e-4)
  if strategy == "patched":  # the default's step runs in test_training.py; 'conditioned' only concatenates
    # a train step traces with this critic (what it sees follows the strategy)
    batch = {k: jax.ShapeDtypeStruct((8, crop, crop, 3), np.float32) for k in ("clean", "degraded", "degraded_key")}
    _, metrics = jax.eval_shape(task.train_step, abstract, batch)
    assert metrics["critic_loss"].shape == ()


@functools.partial(jax.jit, static_argnums=0)  # one compile for critics of the same shape
def score(critic, params, u):
  return critic.apply({"params": params}, u)


def views_channels(strategy):
  return 3 if strategy == "unconditioned" else 6


def test_fine_tuning_starts_from_the_imported_params(official):
  config = load_config(f"configs/cdd_film_grain.py:tiny,released={official}", mesh__num_devices=1)
  setup = trainer.Setup(config)
  # what train_and_evaluate does at step 0, on a stand-in for the fresh state (its values are replaced
  # or kept, not read; a real init would cost a compile)
  fresh = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), setup.abstract_state)
  state = trainer._load_init_from(setup, fresh)
  model, variables, critic = cdd_torch.import_checkpoint(official, with_critic=True)
  assert int(state.step) == 0
  assert max_abs_diff(state.params["model"], variables["params"]) == 0
  assert max_abs_diff(state.model_state["batch_stats"], variables["batch_stats"]) == 0
  assert max_abs_diff(state.params["critic"], critic.params) == 0
  assert max_abs_diff(state.model_state["key_encoder"]["params"], variables["params"]["global_encoder"]) == 0
  # the config must describe the checkpoint's network
  for fields, named in ((dict(model__generator_width=16), "config.model.generator_width=16 (the checkpoint's: 8)"),
                        (dict(model__official_input_scaling=False), "official_input_scaling=False")):
    task = cdd.CddTask(load_config(f"configs/cdd_film_grain.py:tiny,released={official}", **fields))
    abstract = nn.unbox(jax.eval_shape(task.init_state, jax.random.PRNGKey(0)))
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
      task.params_from_foreign_checkpoint(official, abstract)


def test_film_grain_on_whole_frames_in_tiles(official):
  model = transfer.load(official)
  rng = np.random.default_rng(0)
  frames = []
  for name in ("astronaut", "coffee"):  # grain stand-in: noise that grows with brightness
    x = photo(name, (48, 64))
    frames.append((x, np.clip(x + (0.01 + 0.05 * x) * rng.normal(size=x.shape), 0, 1).astype(np.float32)))
  results = cdd_grain_eval.frame_results(model, frames, tile=32, overlap=16)
  y_stats = {m: results["methods"][m]["Y"] for m in results["methods"]}
  print({m: round(s["curve_error"], 4) for m, s in y_stats.items()})
  assert results["num_examples"] == 2 and not results["failed_fits"]
  assert y_stats["clean"]["curve_error_rel"] == pytest.approx(1.0)
  assert np.isfinite(y_stats["transfer"]["curve_error"]) and np.isfinite(y_stats["av1_fit"]["curve_error"])
  assert y_stats["transfer"] != y_stats["reproduction"]  # another frame's grain, another output
  assert "best-fit AV1" in cdd_grain_eval.tables(results)
  tiled = np.asarray(model.transfer(frames[0][0], frames[1][1], key=0, tile=32, overlap=16))
  assert tiled.shape == (48, 64, 3) and np.abs(tiled - frames[0][0]).max() > 1e-3


def _one_error_line(capsys):
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("jaxdeg: error: "), err
  return err[0]


def test_bad_weights_are_one_line_and_exit_2(official, tmp_path, capsys):
  save_png(tmp_path / "clean.png", photo("astronaut", CONTENT))
  images = ("--content", tmp_path / "clean.png", "--reference", tmp_path / "clean.png", tmp_path / "o.png")
  not_a_checkpoint = tmp_path / "weights.pt"
  not_a_checkpoint.write_bytes((tmp_path / "clean.png").read_bytes())
  missing = save(tiny_parts(), tmp_path / "partial.pt", drop=("netG",))
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  cases = [(("--weights", not_a_checkpoint), "not a PyTorch checkpoint"),
           (("--weights", missing), "official checkpoint without its netG part"),
           (("--weights", run_dir), "a folder, not an official checkpoint file"),
           (("--workdir", official), "a file, not a jaxdeg run folder"),
           (("--workdir", run_dir, "--weights", official), "--workdir RUN (a jaxdeg run) or --weights FILE")]
  for args, message in cases:
    assert jaxdeg(*args, *images) == 2
    assert message in _one_error_line(capsys)
  assert cdd_eval.main([official]) == 2
  assert "a file, not a run folder" in _one_error_line(capsys)
  assert cdd_grain_eval.main(["--weights", str(missing), "--pairs", str(tmp_path)]) == 2
  assert "without its netG part" in _one_error_line(capsys)
  # init_from naming a file that is not a checkpoint: one line from the trainer's entry point
  task = cdd.CddTask(load_config(f"configs/cdd_film_grain.py:tiny,released={not_a_checkpoint}"))
  with pytest.raises(UserError, match="not a PyTorch checkpoint") as err:
    task.params_from_foreign_checkpoint(str(not_a_checkpoint), None)
  assert "\n" not in str(err.value)
