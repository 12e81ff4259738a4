#!/usr/bin/env bash
# PromptSRC few-shot: train on all classes with SHOTS images per class, seeds 1-3.
# usage: DATA=/path/to/datasets bash scripts/promptsrc/few_shot.sh DATASET SHOTS
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SHOTS" 2 $#
DATASET=$1
SHOTS=$2
TRAINER=PromptSRC
CFG=vit_b16_c2_ep50_batch4_4+4ctx_few_shot

check_method_args "${TRAINER}" "${CFG}" "${DATASET}" SHOTS "${SHOTS}"
for SEED in 1 2 3; do
    DIR=${OUTPUT_ROOT}/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
    skip_if_finished "${DIR}" && continue
    launch_train "${DIR}" "${TRAINER}" "${CFG}" "${DATASET}" "${SEED}" DATASET.NUM_SHOTS "${SHOTS}"
done
