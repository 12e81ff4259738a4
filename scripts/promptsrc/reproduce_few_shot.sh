#!/usr/bin/env bash
# PromptSRC released few-shot weights (WEIGHTS_PATH/<SHOTS>shot/seedSEED, epoch 50) evaluated for seeds 1-3.
# Finished evaluations are skipped.
# usage: DATA=/path/to/datasets bash scripts/promptsrc/reproduce_few_shot.sh DATASET SHOTS WEIGHTS_PATH
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SHOTS WEIGHTS_PATH" 3 $#
DATASET=$1
SHOTS=$2
WEIGHTSPATH=$(to_abs "$3")
TRAINER=PromptSRC
CFG=vit_b16_c2_ep50_batch4_4+4ctx_few_shot
LOADEP=50

check_method_args "${TRAINER}" "${CFG}" "${DATASET}" SHOTS "${SHOTS}"
for SEED in 1 2 3; do
    MODEL_DIR=${WEIGHTSPATH}/${SHOTS}shot/seed${SEED}
    [[ -d "${MODEL_DIR}" ]] || die "no weights in ${MODEL_DIR}; WEIGHTS_PATH must hold <SHOTS>shot/seed<SEED>/"
    DIR=${OUTPUT_ROOT}/few_shot/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
    skip_if_finished "${DIR}" && continue
    launch_eval "${DIR}" "${MODEL_DIR}" "${LOADEP}" "${TRAINER}" "${CFG}" "${DATASET}" "${SEED}" DATASET.NUM_SHOTS "${SHOTS}"
done
