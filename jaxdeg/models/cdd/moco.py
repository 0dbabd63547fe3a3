"""MoCo for the global encoder, as pure functions for a jitted train step.

The query encoder is HDEN with gradients; the key encoder is a second set of HDEN variables,
never differentiated, moved as k ← m·k + (1 − m)·q (m = 0.999) at the start of each step, before
it encodes that step's keys (MoCo's order). The queue holds
the last K = 120 L2-normalised keys (the negatives) as a [K, D] array plus a write pointer;
`enqueue` overwrites the oldest entries, wrapping around. Logits are cosine similarities over a
temperature (0.07), the positive (same degraded image, another crop) at index 0, so the loss is
cross-entropy with label 0.

Under data sharding (the batch axis split over the mesh, params and queue replicated):
- BatchNorm statistics are those of the GLOBAL batch: under `jax.jit` with sharded inputs the
  batch mean/variance are global reductions, so a step on N devices computes what the same step
  on one device computes. (The official code ran one GPU, or DataParallel, whose per-replica
  statistics we do not reproduce; MoCo's batch shuffle, a guard against per-device BN leaking
  the positive, is therefore not needed.)
- The key encoder keeps its own `batch_stats`, updated by its own forward pass in training mode
  (as the official key encoder does), separate from the query encoder's.
- The queue is replicated: `enqueue` writes the global batch's keys, so it is identical on every
  device and process, and checkpoints as one array.
"""
import flax
import jax
import jax.numpy as jnp

MOMENTUM = 0.999
TEMPERATURE = 0.07
QUEUE_SIZE = 120


@flax.struct.dataclass
class Queue:
  keys: jax.Array  # [K, D], unit rows
  ptr: jax.Array   # int32 scalar: the next row to overwrite


def l2_normalize(x, axis=-1, eps=1e-12):
  """x / max(‖x‖, eps), as torch.nn.functional.normalize."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)


def init_queue(key, size=QUEUE_SIZE, dim=256, dtype=jnp.float32):
  """A queue of `size` random unit vectors (the official initial negatives)."""
  return Queue(l2_normalize(jax.random.normal(key, (size, dim), dtype)), jnp.zeros((), jnp.int32))


def enqueue(queue: Queue, keys):
  """Dequeue the oldest len(keys) entries and write `keys` [B, D] in their place (B ≤ K)."""
  k, b = queue.keys.shape[0], keys.shape[0]
  if b > k:
    raise ValueError(f"enqueue: {b} keys do not fit a queue of {k}")
  rows = (queue.ptr + jnp.arange(b)) % k
  new_keys = queue.keys.at[rows].set(jax.lax.stop_gradient(keys).astype(queue.keys.dtype))
  return Queue(new_keys, ((queue.ptr + b) % k).astype(jnp.int32))


def momentum_update(key_params, query_params, momentum=MOMENTUM):
  """k ← m·k + (1 − m)·q, leaf by leaf (params only; batch stats are each encoder's own)."""
  return jax.tree.map(lambda k, q: k * momentum + jax.lax.stop_gradient(q) * (1 - momentum), key_params, query_params)


def contrastive_logits(queries, keys, queue: Queue, temperature=TEMPERATURE):
  """[B, 1 + K] logits: cos(q, k) of the positive at index 0, then cos(q, queue_j), over T.

  Returns (logits, normalised keys): the keys, without gradient, are what to enqueue next."""
  q = l2_normalize(queries)
  k = jax.lax.stop_gradient(l2_normalize(keys))
  positive = jnp.sum(q * k, axis=-1, keepdims=True)
  negative = q @ jax.lax.stop_gradient(queue.keys).T
  return jnp.concatenate([positive, negative], axis=-1) / temperature, k


def contrastive_loss(logits):
  """Cross-entropy with the positive at index 0, batch mean."""
  return -jnp.mean(jax.nn.log_softmax(logits, axis=-1)[:, 0])


__all__ = ["Queue", "init_queue", "enqueue", "momentum_update", "contrastive_logits", "contrastive_loss",
           "l2_normalize", "MOMENTUM", "TEMPERATURE", "QUEUE_SIZE"]
