#!/usr/bin/env bash
# GPU check (issue 18, item 6): one command, under 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh                 # -> docs/benchmarks/gpu/gpu_check.{json,md}
#   bash benchmarks/gpu_check.sh --out DIR       # elsewhere
#   bash benchmarks/gpu_check.sh --quick         # tiny sizes: CPU smoke test (seconds)
#   bash benchmarks/gpu_check.sh --install       # first: pip install the CUDA jax wheels, i.e.
#                                                #   pip install -U "jax[cuda12]"
# Other options go to benchmarks/gpu_check.py (--only peak,lsuv; --budget-scale 1.5; --allow-cpu).
# PYTHON=/path/to/venv/bin/python picks the interpreter (default: python on PATH).
#
# Installs nothing unless --install. Non-interactive; every part has its own time budget and the
# whole run a global `timeout` (GPU_CHECK_TIMEOUT seconds, default 470). Results are rewritten
# after every part, so a killed run still leaves what it measured. Exit status: 0 if every part
# succeeded, 1 if some failed (named in the output), 124 on the global timeout.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # the repository root: this checkout's jinit and experiments
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python}"

args=()
quick=0
for a in "$@"; do
  [[ "$a" == "--quick" ]] && quick=1
  if [[ "$a" == "--install" ]]; then
    echo "[gpu_check] pip install -U 'jax[cuda12]'"
    "$PYTHON" -m pip install -U "jax[cuda12]"
  else
    args+=("$a")
  fi
done

# XLA/JAX settings: compile times are part of the measurement, so no persistent compilation
# cache; the workers run one after the other, so XLA's default preallocation (75% of the GPU) is
# safe and keeps allocation out of the timings; the user's own XLA_FLAGS are kept as they are.
export JAX_ENABLE_COMPILATION_CACHE="${JAX_ENABLE_COMPILATION_CACHE:-false}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"

[[ $quick -eq 1 ]] || "$PYTHON" - <<'PY' || { echo "[gpu_check] ERROR: jax does not import in $PYTHON (run with --install?)" >&2; exit 2; }
import jax
d = jax.devices()
print(f"[gpu_check] jax {jax.__version__}, backend {jax.default_backend()}, {len(d)} x {d[0].device_kind}")
if jax.default_backend() == "cpu":
    print("[gpu_check] no GPU visible to jax: without --allow-cpu this runs the quick sizes")
PY

status=0
timeout --signal=TERM --kill-after=20 "${GPU_CHECK_TIMEOUT:-470}" \
  "$PYTHON" benchmarks/gpu_check.py ${args[@]+"${args[@]}"} || status=$?
if [[ $status -eq 124 ]]; then
  echo "[gpu_check] ERROR: global timeout (${GPU_CHECK_TIMEOUT:-470} s); partial results were written" >&2
fi
exit $status
