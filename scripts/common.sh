# shellcheck shell=bash
# Helpers shared by scripts/<method>/*.sh (source this file; it is not a script of its own).
#
# Conventions (methods.md §4.11, with the fixes of §5 #19):
# - The dataset root comes from the DATA environment variable (no hard-coded cluster paths).
# - The GPU is whatever CUDA_VISIBLE_DEVICES says (never forced to 0); unset means "all visible".
# - Scripts run from the repository root (they cd there), so `train.py`, `configs/...` and `output/...` are the
#   same relative paths upstream uses. OUTPUT_ROOT (default "output") moves the output tree; PYTHON (default
#   "python") picks the interpreter.
# - A run whose folder already holds a final result is skipped; an unfinished one is started again and the
#   engine resumes it from its last checkpoint (upstream skipped any existing folder, so a crashed run stayed
#   crashed, or re-ran finished ones).

set -euo pipefail

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPTS_DIR}/.." && pwd)"
CALLER_DIR="$(pwd)"
PYTHON_BIN="${PYTHON:-python}"
KD_WEIGHTS_FILE="${REPO_ROOT}/configs/kd_weights.yaml"

die() {
    echo "error: $*" >&2
    exit 2
}

# to_abs PATH: PATH made absolute against the directory the script was called from.
to_abs() {
    case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "${CALLER_DIR}/$1" ;;
    esac
}

# require_args USAGE EXPECTED GOT: exit with the usage line unless exactly EXPECTED arguments were given.
require_args() {
    local usage="$1" expected="$2" got="$3"
    if [[ "${got}" -ne "${expected}" ]]; then
        echo "usage: $(basename "$0") ${usage}" >&2
        die "expected ${expected} argument(s), got ${got}"
    fi
}

# require_data: DATA must name an existing directory; exported as an absolute path.
require_data() {
    if [[ -z "${DATA:-}" ]]; then
        die "the DATA environment variable is not set; point it at the folder that holds the datasets, e.g. DATA=/data/datasets bash $0 ..."
    fi
    if [[ ! -d "${DATA}" ]]; then
        die "DATA=${DATA} is not a directory; set DATA to the folder that holds the datasets"
    fi
    DATA="$(cd "$(to_abs "${DATA}")" && pwd)"
    export DATA
}

# list_yaml_stems DIR: the names of DIR/*.yaml without the extension, space separated.
list_yaml_stems() {
    local path names=()
    for path in "$1"/*.yaml; do
        [[ -e "${path}" ]] || continue
        path="${path##*/}"
        names+=("${path%.yaml}")
    done
    printf '%s' "${names[*]}"
}

# require_dataset NAME: configs/datasets/NAME.yaml must exist.
require_dataset() {
    local name="$1"
    if [[ ! -f "${REPO_ROOT}/configs/datasets/${name}.yaml" ]]; then
        local known
        known="$(list_yaml_stems "${REPO_ROOT}/configs/datasets")"
        die "unknown dataset '${name}': configs/datasets/${name}.yaml does not exist; known: ${known:-none}"
    fi
}

# require_config TRAINER CFG: configs/trainers/TRAINER/CFG.yaml must exist.
require_config() {
    local trainer="$1" cfg="$2"
    if [[ ! -f "${REPO_ROOT}/configs/trainers/${trainer}/${cfg}.yaml" ]]; then
        local known
        known="$(list_yaml_stems "${REPO_ROOT}/configs/trainers/${trainer}")"
        die "unknown config '${cfg}' for ${trainer}: configs/trainers/${trainer}/${cfg}.yaml does not exist; known: ${known:-none}"
    fi
}

# require_int NAME VALUE: VALUE must be an integer (seeds may be 0; a negative seed means unseeded).
require_int() {
    local name="$1" value="$2"
    if [[ ! "${value}" =~ ^-?[0-9]+$ ]]; then
        die "${name} must be an integer, got '${value}'"
    fi
}

# require_choice NAME VALUE ALLOWED...: VALUE must be one of ALLOWED.
require_choice() {
    local name="$1" value="$2"
    shift 2
    local allowed
    for allowed in "$@"; do
        [[ "${value}" == "${allowed}" ]] && return 0
    done
    die "${name} must be one of: $*; got '${value}'"
}

# kd_weight DATASET: the TRAINER.PROMPTKD.KD_WEIGHT for DATASET from configs/kd_weights.yaml.
kd_weight() {
    local name="$1" value
    [[ -f "${KD_WEIGHTS_FILE}" ]] || die "${KD_WEIGHTS_FILE} is missing"
    value="$(awk -F':' -v key="${name}" '
        /^[[:space:]]*#/ { next }
        { k = $1; gsub(/[[:space:]]/, "", k); if (k == key) { v = $2; gsub(/[[:space:]]/, "", v); print v; exit } }
    ' "${KD_WEIGHTS_FILE}")"
    if [[ -z "${value}" ]]; then
        die "no KD weight for dataset '${name}' in configs/kd_weights.yaml; add a line '${name}: 1000.0' (or the weight you want)"
    fi
    printf '%s\n' "${value}"
}

# run_finished DIR: success when DIR holds a final result: a results.jsonl record of phase "final" or "eval_only"
# (or a PromptKD summary), or, for logs written before results.jsonl existed, a log.txt with "Finish training"
# followed by an accuracy line (training runs) or an accuracy line and no training iterations (eval-only runs).
run_finished() {
    local dir="$1"
    if [[ -f "${dir}/results.jsonl" ]] &&
        grep -Eq '"phase": *"(final|eval_only)"|"event": *"summary"' "${dir}/results.jsonl"; then
        return 0
    fi
    if [[ -f "${dir}/log.txt" ]]; then
        if awk '/^Finish training/ { done = 1 } done && /\* accuracy:/ { found = 1 } END { exit !found }' "${dir}/log.txt"; then
            return 0
        fi
        if grep -q '\* accuracy:' "${dir}/log.txt" && ! grep -q '^epoch \[' "${dir}/log.txt"; then
            return 0
        fi
    fi
    return 1
}

# skip_if_finished DIR: prints the reason and returns success when the run in DIR is complete.
skip_if_finished() {
    if run_finished "$1"; then
        echo "Results are available in $1 (final result found). Skipping; delete the folder to run again."
        return 0
    fi
    return 1
}

# run_train ARGS...: `python train.py ARGS...` (the scripts already run from the repository root).
run_train() {
    echo "Running on CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-<all visible>}: ${PYTHON_BIN} train.py $*"
    "${PYTHON_BIN}" train.py "$@"
}

# Output tree: upstream's relative "output" under the repository root unless OUTPUT_ROOT says otherwise
# (a relative OUTPUT_ROOT is taken relative to the caller's directory).
if [[ -n "${OUTPUT_ROOT:-}" ]]; then
    OUTPUT_ROOT="$(to_abs "${OUTPUT_ROOT}")"
else
    OUTPUT_ROOT="output"
fi
cd "${REPO_ROOT}"
