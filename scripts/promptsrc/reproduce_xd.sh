#!/usr/bin/env bash
# PromptSRC released cross-dataset weights (WEIGHTS_PATH/seedSEED, epoch 20) evaluated on DATASET.
# A finished evaluation is skipped.
# usage: DATA=/path/to/datasets bash scripts/promptsrc/reproduce_xd.sh DATASET SEED WEIGHTS_PATH
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED WEIGHTS_PATH" 3 $#
DATASET=$1
SEED=$2
WEIGHTSPATH=$(to_abs "$3")
TRAINER=PromptSRC
CFG=vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets
SHOTS=16
LOADEP=20

check_method_args "${TRAINER}" "${CFG}" "${DATASET}" SEED "${SEED}"
MODEL_DIR=${WEIGHTSPATH}/seed${SEED}
[[ -d "${MODEL_DIR}" ]] || die "no weights in ${MODEL_DIR}; WEIGHTS_PATH must hold seed<SEED>/"
DIR=${OUTPUT_ROOT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}
skip_if_finished "${DIR}" && exit 0
launch_eval "${DIR}" "${MODEL_DIR}" "${LOADEP}" "${TRAINER}" "${CFG}" "${DATASET}" "${SEED}" DATASET.NUM_SHOTS "${SHOTS}"
