#!/usr/bin/env bash
# GPU check of prefkit's training path: a short DPO + LoRA run (the study's settings, bf16) on a ~0.5B
# Qwen2-shaped model with random weights; prints samples/s, tokens/s and peak GPU memory
# (benchmarks/gpu_train_check.py explains what runs). Sized to finish well inside 10 minutes on one H100:
# about a minute of installs and model building, then 20 optimizer steps of 8 pairs of ~1k tokens.
#
#   bash benchmarks/gpu_train_check.sh                 # GPU
#   bash benchmarks/gpu_train_check.sh --cpu --tiny    # CPU smoke test (tiny model)
#
# The GPU machine has torch, transformers, peft and pyarrow but not trl or datasets, and no network. Put
# the wheels in .whl/ (cp312 / py3: trl 1.16.0, datasets 5.2.0, dill 0.4.1, multiprocess 0.70.19,
# xxhash 4.1.0, fsspec 2026.9.0; a pyarrow>=24 wheel in .whl/optional/ only for a machine whose pyarrow is
# older, which the lent H100 is not): they go to a private folder (.whl/site, on PYTHONPATH), never into
# the system's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c "import trl, datasets" 2>/dev/null; then
  if [ ! -d .whl ]; then
    echo "trl/datasets are missing and there is no .whl/ folder of wheels to install them from" >&2
    exit 2
  fi
  SITE="$PWD/.whl/site"
  wheels=(.whl/*.whl)
  if ! "$PYTHON" -c "import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)" 2>/dev/null; then
    wheels+=(.whl/optional/pyarrow-*.whl)  # datasets 5.2 needs pyarrow>=24
  fi
  "$PYTHON" -m pip install --quiet --no-deps --no-index --target "$SITE" "${wheels[@]}"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
"$PYTHON" -c "import torch, transformers, peft, trl, datasets, pyarrow; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__, 'datasets', \
datasets.__version__, 'pyarrow', pyarrow.__version__)"
exec "$PYTHON" benchmarks/gpu_train_check.py "$@"
