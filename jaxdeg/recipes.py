"""Config pieces that several files in configs/ share, each written once. Plain values: a config file
that imports this module imports nothing heavy."""

# The small NAFNet restorer of the CPU experiments (restore_procedural, demo, synthetic_vs_procedural)
# and the tiny one of the tests.
SMALL_NAFNET = dict(name="nafnet", width=16, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1))
TINY_NAFNET = dict(name="nafnet", width=8, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,))

# Their optimizer: AdamW (β2 0.99, decay 1e-4), linear warm-up then cosine decay to 5 %, clipped at 1.
NAFNET_CPU_ADAMW = dict(learning_rate=2e-3, warmup_steps=50, final_lr_fraction=0.05, b1=0.9, b2=0.99,
                        weight_decay=1e-4, grad_clip=1.0)


def unknown_variant(path, variant, variants):
  """The one error for a config argument no branch of `path` knows."""
  return ValueError(f"{path}: unknown variant {variant!r}; variants: {', '.join(variants)}")
