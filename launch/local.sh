#!/usr/bin/env bash
# One host, all its CPUs/GPUs/TPU cores: train (or evaluate) an experiment.
#   launch/local.sh configs/restore_procedural.py workdir/restore [--mode=evaluate] [--config.train.steps=100 ...]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG[:variant] WORKDIR [flags...]" >&2
  exit 2
fi
config=$1
workdir=$2
shift 2
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
exec "$python" -m jaxdeg.main --config="$config" --workdir="$workdir" "$@"
