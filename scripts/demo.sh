#!/usr/bin/env bash
# The offline PromptKD demo in one command: generated dataset, tiny pre-trained CLIPs, PromptSRC teacher on the
# base classes, PromptKD student on unlabeled images, base/novel/HM table. No downloads, a few minutes on CPU.
# usage: bash scripts/demo.sh [python -m demo options, e.g. --preset small --output-dir DIR]
# Environment: PYTHON (default "python"), OUTPUT_ROOT (default "output": results go to $OUTPUT_ROOT/demo),
#              PROMPTKD_CACHE_DIR (pre-trained CLIP cache, default ~/.cache/promptkd; the demo uses its demo/).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER_DIR="$(pwd)"
OUTPUT_ROOT="${OUTPUT_ROOT:-output}"
case "${OUTPUT_ROOT}" in
/*) ;;
*) OUTPUT_ROOT="${CALLER_DIR}/${OUTPUT_ROOT}" ;;
esac

cd "${REPO_ROOT}"
exec "${PYTHON:-python}" -m demo --output-dir "${OUTPUT_ROOT}/demo" "$@"
