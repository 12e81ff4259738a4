# shellcheck shell=bash
# Helpers shared by scripts/<method>/*.sh (source this file; it is not a script of its own).
#
# Conventions (upstream's, with its script bugs fixed):
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

# check_method_args TRAINER CFG DATASET [NAME VALUE]: the checks every method script makes before it runs, in this
# order: DATA, the integer argument NAME=VALUE (SEED or SHOTS) when given, the dataset, the trainer config.
# Safe to call twice (the run_* helpers below call it; PromptKD scripts call it first to look up the KD weight).
check_method_args() {
    local trainer="$1" cfg="$2" dataset="$3"
    require_data
    if [[ $# -ge 5 ]]; then
        require_int "$4" "$5"
    fi
    require_dataset "${dataset}"
    require_config "${trainer}" "${cfg}"
}

# launch_train DIR TRAINER CFG DATASET SEED [OPT...]: a training run into DIR: train.py with the flags every
# method passes, then the KEY VALUE config OPTs.
launch_train() {
    local dir="$1" trainer="$2" cfg="$3" dataset="$4" seed="$5"
    shift 5
    run_train \
        --root "${DATA}" \
        --seed "${seed}" \
        --trainer "${trainer}" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        --output-dir "${dir}" \
        "$@"
}

# launch_eval DIR MODEL_DIR LOADEP TRAINER CFG DATASET SEED [OPT...]: an --eval-only run into DIR of the weights
# saved in MODEL_DIR at epoch LOADEP, then the KEY VALUE config OPTs.
launch_eval() {
    local dir="$1" model_dir="$2" loadep="$3"
    shift 3
    launch_train "${dir}" "$1" "$2" "$3" "$4" \
        --model-dir "${model_dir}" \
        --load-epoch "${loadep}" \
        --eval-only \
        "${@:5}"
}

# run_base2new_train TRAINER CFG SHOTS DATASET SEED: base-to-novel training on the base classes with SHOTS shots
# into output/base2new/train_base/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED.
run_base2new_train() {
    local trainer="$1" cfg="$2" shots="$3" dataset="$4" seed="$5"
    check_method_args "${trainer}" "${cfg}" "${dataset}" SEED "${seed}"
    local dir=${OUTPUT_ROOT}/base2new/train_base/${dataset}/shots_${shots}/${trainer}/${cfg}/seed${seed}
    skip_if_finished "${dir}" && return 0
    launch_train "${dir}" "${trainer}" "${cfg}" "${dataset}" "${seed}" \
        DATASET.NUM_SHOTS "${shots}" \
        DATASET.SUBSAMPLE_CLASSES base
}

# run_base2new_test TRAINER CFG SHOTS LOADEP DATASET SEED: the model of run_base2new_train (epoch LOADEP) evaluated
# on the novel classes, into output/base2new/test_new/... (same sub-path as the train folder).
run_base2new_test() {
    local trainer="$1" cfg="$2" shots="$3" loadep="$4" dataset="$5" seed="$6"
    local sub=new
    check_method_args "${trainer}" "${cfg}" "${dataset}" SEED "${seed}"
    local common_dir=${dataset}/shots_${shots}/${trainer}/${cfg}/seed${seed}
    local model_dir=${OUTPUT_ROOT}/base2new/train_base/${common_dir}
    local dir=${OUTPUT_ROOT}/base2new/test_${sub}/${common_dir}
    skip_if_finished "${dir}" && return 0
    [[ -d "${model_dir}" ]] || die "no trained model in ${model_dir}; run the matching train script first"
    launch_eval "${dir}" "${model_dir}" "${loadep}" "${trainer}" "${cfg}" "${dataset}" "${seed}" \
        DATASET.NUM_SHOTS "${shots}" \
        DATASET.SUBSAMPLE_CLASSES "${sub}"
}

# run_xd_train TRAINER CFG SHOTS DATASET SEED [OPT...]: cross-dataset source training on all classes of DATASET
# (ImageNet in the papers) into output/DATASET/TRAINER/CFG_SHOTSshots/seedSEED; OPTs follow DATASET.NUM_SHOTS.
run_xd_train() {
    local trainer="$1" cfg="$2" shots="$3" dataset="$4" seed="$5"
    shift 5
    check_method_args "${trainer}" "${cfg}" "${dataset}" SEED "${seed}"
    local dir=${OUTPUT_ROOT}/${dataset}/${trainer}/${cfg}_${shots}shots/seed${seed}
    skip_if_finished "${dir}" && return 0
    launch_train "${dir}" "${trainer}" "${cfg}" "${dataset}" "${seed}" \
        DATASET.NUM_SHOTS "${shots}" \
        "$@"
}

# run_xd_test TRAINER CFG SHOTS LOADEP DATASET SEED: the ImageNet weights of run_xd_train (epoch LOADEP) evaluated
# on all classes of DATASET, into output/evaluation/TRAINER/CFG_SHOTSshots/DATASET/seedSEED.
run_xd_test() {
    local trainer="$1" cfg="$2" shots="$3" loadep="$4" dataset="$5" seed="$6"
    check_method_args "${trainer}" "${cfg}" "${dataset}" SEED "${seed}"
    local model_dir=${OUTPUT_ROOT}/imagenet/${trainer}/${cfg}_${shots}shots/seed${seed}
    local dir=${OUTPUT_ROOT}/evaluation/${trainer}/${cfg}_${shots}shots/${dataset}/seed${seed}
    skip_if_finished "${dir}" && return 0
    [[ -d "${model_dir}" ]] || die "no ImageNet-trained model in ${model_dir}; run the xd train script on imagenet first"
    launch_eval "${dir}" "${model_dir}" "${loadep}" "${trainer}" "${cfg}" "${dataset}" "${seed}"
}

# run_reproduce_base2new TRAINER CFG SHOTS LOADEP DATASET SEED WEIGHTS_PATH: released base-to-novel weights
# (WEIGHTS_PATH/base/seedSEED, epoch LOADEP) evaluated on the base and on the novel classes, into
# output/base2new/test_{base,new}/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED; finished evaluations are skipped.
run_reproduce_base2new() {
    local trainer="$1" cfg="$2" shots="$3" loadep="$4" dataset="$5" seed="$6" weights_path="$7"
    check_method_args "${trainer}" "${cfg}" "${dataset}" SEED "${seed}"
    local common_dir=${dataset}/shots_${shots}/${trainer}/${cfg}/seed${seed}
    local model_dir=${weights_path}/base/seed${seed}
    [[ -d "${model_dir}" ]] || die "no weights in ${model_dir}; WEIGHTS_PATH must hold base/seed<SEED>/"
    local sub dir
    for sub in base new; do
        dir=${OUTPUT_ROOT}/base2new/test_${sub}/${common_dir}
        skip_if_finished "${dir}" && continue
        launch_eval "${dir}" "${model_dir}" "${loadep}" "${trainer}" "${cfg}" "${dataset}" "${seed}" \
            DATASET.NUM_SHOTS "${shots}" \
            DATASET.SUBSAMPLE_CLASSES "${sub}"
    done
}

# run_each_dataset_and_seed LABEL SCRIPT DATASET...: `bash SCRIPT DATASET SEED` for every DATASET and every seed of
# SEEDS (default "1 2 3"), all arguments checked before the first run (the reproduce_*.sh sweeps).
# run_each_dataset_and_seed LABEL SCRIPT... -- DATASET...: the same with several SCRIPTs, run in order for each
# dataset and seed (e.g. a train script, then its test script).
run_each_dataset_and_seed() {
    local label="$1"
    shift
    local -a scripts=() seeds
    if [[ " $* " == *" -- "* ]]; then
        while [[ "$1" != "--" ]]; do
            scripts+=("$1")
            shift
        done
        shift
    else
        scripts=("$1")
        shift
    fi
    local dataset seed script
    read -r -a seeds <<<"${SEEDS:-1 2 3}"
    require_data
    for dataset in "$@"; do
        require_dataset "${dataset}"
    done
    for seed in "${seeds[@]}"; do
        require_int SEED "${seed}"
    done
    for dataset in "$@"; do
        for seed in "${seeds[@]}"; do
            echo "=== ${label}: ${dataset} seed ${seed}"
            for script in "${scripts[@]}"; do
                bash "${script}" "${dataset}" "${seed}"
            done
        done
    done
}

# Output tree: upstream's relative "output" under the repository root unless OUTPUT_ROOT says otherwise
# (a relative OUTPUT_ROOT is taken relative to the caller's directory).
if [[ -n "${OUTPUT_ROOT:-}" ]]; then
    OUTPUT_ROOT="$(to_abs "${OUTPUT_ROOT}")"
else
    OUTPUT_ROOT="output"
fi
cd "${REPO_ROOT}"
