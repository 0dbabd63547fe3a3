"""`jaxdeg.transfer`: the Python API (any size, noise from the key, differentiable in the clean
image) and the `jaxdeg transfer` command (single, batch, bad files, bad runs)."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxdeg import cli, transfer
from jaxdeg.data import samples
from jaxdeg.train import checkpoint as ckpt
from tests.tasks.cdd.shared_run import tiny_run
from tests.utils import bomb_png
from tests.utils import load_config

# sizes that are not multiples of what the model needs: padding and cropping are exercised
CONTENT, REFERENCE = (36, 52), (45, 61)


def photo(name, size, noise=0.0, seed=0):
  h, w = size
  image = samples.load(name)[100:100 + h, 120:120 + w].astype(np.float32) / 255
  rng = np.random.default_rng(seed)
  return np.clip(image + noise * rng.normal(size=image.shape), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return tiny_run(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def model(run):
  return transfer.load(run)


def test_any_size_in_and_out_and_the_noise_key_decides_the_sample(model):
  x, y = photo("astronaut", CONTENT), photo("coffee", REFERENCE, noise=0.1)
  a = np.asarray(model.transfer(x, y, key=1))
  assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1
  np.testing.assert_array_equal(a, np.asarray(model.transfer(x, y, key=1)))
  assert np.abs(a - np.asarray(model.transfer(x, y, key=2))).max() > 1e-4
  many = np.asarray(model.transfer(x, y, key=3, samples=3))
  assert many.shape == (3,) + x.shape and np.abs(many[0] - many[1]).max() > 1e-4
  # one embedding for a batch of clean images; the local map follows each content's grid
  emb = model.embed(y)
  assert emb.local_embedding.shape[1:3] == (23, 31)
  batch = np.asarray(model.apply(np.stack([x, x[::-1]]), emb, key=1))
  assert batch.shape == (2,) + x.shape and np.isfinite(batch).all()


def test_apply_is_differentiable_in_the_clean_image(model):
  # a trained degradation model as the forward operator of a restorer's loss
  x, y = photo("astronaut", CONTENT), photo("coffee", REFERENCE, noise=0.1)
  emb = model.embed(y)
  target = jnp.asarray(y[:CONTENT[0], :CONTENT[1]])
  grad = jax.grad(lambda x: jnp.mean(jnp.square(model.apply(x, emb, key=0, clip=False) - target)))(jnp.asarray(x))
  grad = np.asarray(grad)
  assert grad.shape == x.shape and np.isfinite(grad).all() and np.abs(grad).max() > 0


def save(path, image):
  Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def read(path):
  return np.asarray(Image.open(path), np.float32) / 255


def jaxdeg(*args):
  return cli.main(["jaxdeg", "transfer", *map(str, args)])


def test_command_line_single_and_samples(run, model, tmp_path, capsys):
  x, y = photo("astronaut", CONTENT), photo("coffee", REFERENCE, noise=0.1)
  save(tmp_path / "clean.png", x)
  save(tmp_path / "degraded.png", y)
  assert jaxdeg("--workdir", run, "--content", tmp_path / "clean.png", "--reference", tmp_path / "degraded.png",
                tmp_path / "out.png", "--seed", 1) == 0
  expected = np.asarray(model.transfer(read(tmp_path / "clean.png"), read(tmp_path / "degraded.png"), key=1))
  assert np.abs(read(tmp_path / "out.png") - expected).max() <= 1 / 255 + 1e-6  # 8-bit output
  assert jaxdeg("--workdir", run, "--content", tmp_path / "clean.png", "--reference", tmp_path / "degraded.png",
                tmp_path / "many.png", "--samples", 2) == 0
  assert sorted(f for f in os.listdir(tmp_path) if f.startswith("many")) == ["many_0.png", "many_1.png"]
  assert "wrote" in capsys.readouterr().out


def test_command_line_batch_skips_and_lists_unreadable_files(run, tmp_path, capsys):
  content, reference = tmp_path / "clean", tmp_path / "degraded"
  content.mkdir()
  reference.mkdir()
  for i, name in enumerate(("a", "b")):
    save(content / f"{name}.png", photo("astronaut", CONTENT, seed=i))
    save(reference / f"{name}.png", photo("coffee", REFERENCE, noise=0.1, seed=i))
  (content / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
  save(reference / "c.png", photo("coffee", REFERENCE))
  save(content / "d.png", photo("astronaut", CONTENT))
  bomb_png(reference / "d.png")  # a header claiming 100000²: refused before decoding
  rc = jaxdeg("--workdir", run, "--content-dir", content, "--reference-dir", reference,
              "--output-dir", tmp_path / "out")
  captured = capsys.readouterr()
  assert rc == 1
  assert "skipped 2 unreadable pair(s)" in captured.err and "c.png" in captured.err
  assert "d.png: more pixels than the cap" in captured.err
  assert "transferred 2 pair(s)" in captured.out
  assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png"]
  assert read(tmp_path / "out" / "a.png").shape == CONTENT + (3,)


def test_folders_pair_by_stem_else_by_order(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  a.mkdir()
  b.mkdir()
  for name in ("x.png", "y.jpg"):
    (a / name).write_bytes(b"")
  for name in ("y.png", "x.png", "notes.txt"):
    (b / name).write_bytes(b"")
  pairs = transfer.pair_folders(str(a), str(b))
  assert [(os.path.basename(c), os.path.basename(r), s) for c, r, s in pairs] == [
      ("x.png", "x.png", "x"), ("y.jpg", "y.png", "y")]
  (b / "x.png").rename(b / "z.png")
  assert [os.path.basename(r) for _, r, _ in transfer.pair_folders(str(a), str(b))] == ["y.png", "z.png"]
  (b / "w.png").write_bytes(b"")
  with pytest.raises(Exception, match="cannot pair 2 content image"):
    transfer.pair_folders(str(a), str(b))


def _one_error_line(capsys):
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("jaxdeg: error: "), err
  return err[0]


def test_bad_input_is_one_line_and_exit_2(run, tmp_path, capsys):
  save(tmp_path / "clean.png", photo("astronaut", CONTENT))
  assert jaxdeg("--workdir", run, "--content", tmp_path / "clean.png", "--reference", tmp_path / "nope.png",
                tmp_path / "o.png") == 2
  assert "nope.png: no such file" in _one_error_line(capsys)
  assert jaxdeg("--workdir", tmp_path / "no_run", "--content", tmp_path / "clean.png", "--reference",
                tmp_path / "clean.png", tmp_path / "o.png") == 2
  assert "no such folder" in _one_error_line(capsys)
  assert jaxdeg("--workdir", run, "--content", tmp_path / "clean.png", "--output-dir", tmp_path / "o") == 2
  assert "either --content" in _one_error_line(capsys)
  # a run of another task (only its config matters for the check)
  other = tmp_path / "restore_run"
  with ckpt.create_manager(other) as mgr:
    ckpt.save(mgr, 1, {"x": np.zeros(2, np.float32)}, config=load_config("configs/restore_procedural.py:tiny"))
    mgr.wait_until_finished()
  assert jaxdeg("--workdir", other, "--content", tmp_path / "clean.png", "--reference", tmp_path / "clean.png",
                tmp_path / "o.png") == 2
  assert "a `restore` run, not a degradation model" in _one_error_line(capsys)


def test_written_pairs_are_the_transfers_and_feed_a_restorer(model, tmp_path):
  from jaxdeg import tasks
  from jaxdeg.data import records, sources
  contents = np.stack([photo(n, (32, 32)) for n in ("astronaut", "coffee", "rocket")])
  references = np.stack([photo(n, (40, 40), noise=0.1, seed=i) for i, n in enumerate(("chelsea", "china", "flower"))])
  folder = tmp_path / "pairs"
  assert transfer.write_pairs(model, contents, references, folder, seed=5, batch_size=2) == 3
  assert transfer.write_pairs(model, contents, references, folder, seed=5, batch_size=2) == 0  # already there
  source = sources.ArrayRecordSource(str(folder))
  recs = [records.unpack(source[i]["packed"]) for i in range(len(source))]
  assert len(recs) == 3 and [r["meta"]["index"] for r in recs] == [0, 1, 2]
  assert all(r["type"] == "transfer" and r["meta"]["generator"] == f"cdd step {model.step}" for r in recs)
  # batch b's noise is fold_in(seed, b): the first two pairs are one transfer call
  first = np.asarray(model.transfer(contents[:2], references[:2], key=jax.random.fold_in(jax.random.PRNGKey(5), 0)))
  got = np.stack([r["degraded"] for r in recs[:2]]).astype(np.float32) / 255
  assert np.abs(got - first).max() <= 0.5 / 255 + 1e-6
  np.testing.assert_array_equal(recs[2]["clean"], np.round(contents[2] * 255).astype(np.uint8))
  # the experiment's synthetic variant trains on them next to the procedural pairs
  config = load_config(f"configs/experiments/synthetic_vs_procedural.py:synthetic={folder}",
                       data__crop=32, train__batch_size=8)
  batch = next(iter(tasks.get(config).train_data()))
  assert batch["clean"].shape == batch["degraded"].shape == (8, 32, 32, 3)
  with pytest.raises(ValueError, match="unknown argument"):
    load_config("configs/experiments/synthetic_vs_procedural.py:learned")
