#!/usr/bin/env bash
# TPU VM pod slice: create it, install jaxdeg on every worker, train, copy results back.
#
#   launch/tpu_vm.sh create NAME ZONE v5litepod-16 [--spot]
#   launch/tpu_vm.sh install NAME ZONE
#   launch/tpu_vm.sh run NAME ZONE configs/restore_procedural.py gs://bucket/runs/restore [--config.mesh.fsdp=4 ...]
#   launch/tpu_vm.sh fetch NAME ZONE gs://bucket/runs/restore ./runs/restore
#   launch/tpu_vm.sh delete NAME ZONE
#
# On a pod every worker runs the same command (--worker=all); jax.distributed finds the other
# workers from the TPU metadata, so no coordinator flags are needed. Use a gs:// workdir (orbax
# writes checkpoints there from all hosts) or a filesystem every worker mounts.
set -euo pipefail
usage() { sed -n '2,13p' "$0" >&2; exit 2; }
[ $# -ge 3 ] || usage
action=$1 name=$2 zone=$3
shift 3
repo_url=${JAXDEG_REPO:-$(git -C "$(dirname "$0")/.." remote get-url origin 2>/dev/null || echo "")}
ssh_all() { gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="$1"; }

case "$action" in
  create)
    [ $# -ge 1 ] || usage
    accel=$1
    shift
    gcloud compute tpus tpu-vm create "$name" --zone="$zone" --accelerator-type="$accel" \
      --version="${TPU_RUNTIME:-v2-alpha-tpuv5-lite}" "$@"
    ;;
  install)
    [ -n "$repo_url" ] || { echo "set JAXDEG_REPO to a git URL the workers can clone" >&2; exit 2; }
    ssh_all "set -e; [ -d jaxdeg ] || git clone $repo_url jaxdeg; cd jaxdeg && git pull --ff-only; \
      python3 -m venv .venv && .venv/bin/pip install -q -U pip && .venv/bin/pip install -q -e . 'jax[tpu]'"
    ;;
  run)
    [ $# -ge 2 ] || usage
    config=$1 workdir=$2
    shift 2
    extra=$(printf ' %q' "$@")
    ssh_all "cd jaxdeg && .venv/bin/python -m jaxdeg.main --config=$config --workdir=$workdir$extra"
    ;;
  fetch)
    [ $# -ge 2 ] || usage
    mkdir -p "$2"
    gcloud storage cp -r "$1/*" "$2/"
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "$name" --zone="$zone" --quiet
    ;;
  *)
    usage
    ;;
esac
