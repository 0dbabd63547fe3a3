"""What every weight import reports when a file does not fit the model: one error naming each
shape mismatch, each variable the file lacks and each key the model has no place for."""
from jaxdeg.errors import UserError


class WeightImportError(UserError):
  """A weight file does not fit the model: the message names the keys and shapes."""


def summary(items, n=8):
  """The first `n` items joined by '; ', with how many more there are."""
  items = list(items)
  return "; ".join(items[:n]) + (f" … and {len(items) - n} more" if len(items) > n else "")


def raise_if_unfit(what, *, mismatched=(), missing=(), unexpected=(), missing_noun="variable(s)", hint=""):
  """WeightImportError '`what` weights do not fit`hint`: …' listing every problem found; nothing
  when there are none."""
  problems = []
  if mismatched:
    problems.append(f"{len(mismatched)} shape mismatch(es): {summary(mismatched)}")
  if missing:
    problems.append(f"{len(missing)} {missing_noun} missing from the file: {summary(missing)}")
  if unexpected:
    problems.append(f"{len(unexpected)} unexpected key(s) in the file: {summary(unexpected)}")
  if problems:
    raise WeightImportError(f"{what} weights do not fit{hint}: " + " | ".join(problems))
