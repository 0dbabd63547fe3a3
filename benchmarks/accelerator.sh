#!/usr/bin/env bash
# The accelerator run (benchmarks/accelerator.py): every workload on this machine's first device,
# rows tagged with the device, within 8 minutes.
#
#   benchmarks/accelerator.sh            on a GPU/TPU machine
#   benchmarks/accelerator.sh --dry-run  anywhere, on CPU: every size shrunk, same code
#
# Accelerator images usually have jax, flax, optax, orbax and torch but not grain, ml-collections,
# clu, array-record or TensorFlow's datasets: what is missing is installed first, from wheels in
# $WHEELS (default .whl/, for machines without network) or else from PyPI, into $SITE.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/jaxdeg-bench-site}
DRY_RUN=()
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=(--dry-run); elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--dry-run]" >&2; exit 2
fi

missing=$("$PYTHON" - <<'PY'
import importlib.util
needed = {"grain": "grain", "ml_collections": "ml-collections", "clu": "clu", "array_record": "array-record",
          "tensorflow_datasets": "tensorflow-datasets", "einops": "einops", "skimage": "scikit-image"}
print(" ".join(pkg for mod, pkg in needed.items() if importlib.util.find_spec(mod) is None))
PY
)
if [[ -n "$missing" ]]; then
  echo "installing what this image lacks: $missing"
  if compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl
  else
    read -ra packages <<< "$missing"
    "$PYTHON" -m pip install -q --no-compile --target "$SITE" "${packages[@]}"
  fi
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
# jaxdeg itself is imported from this checkout; the whole run stays inside the 8-minute budget
exec timeout 480 "$PYTHON" -m benchmarks.accelerator "${DRY_RUN[@]}"
