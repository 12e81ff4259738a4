#!/usr/bin/env bash
# PromptSRC few-shot: train on all classes with SHOTS images per class, seeds 1-3 (methods.md §4.11).
# usage: DATA=/path/to/datasets bash scripts/promptsrc/few_shot.sh DATASET SHOTS
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SHOTS" 2 $#
DATASET=$1
SHOTS=$2
TRAINER=PromptSRC
CFG=vit_b16_c2_ep50_batch4_4+4ctx_few_shot

require_data
require_int SHOTS "${SHOTS}"
require_dataset "${DATASET}"
require_config "${TRAINER}" "${CFG}"

for SEED in 1 2 3; do
    DIR=${OUTPUT_ROOT}/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
    skip_if_finished "${DIR}" && continue
    run_train \
        --root "${DATA}" \
        --seed "${SEED}" \
        --trainer "${TRAINER}" \
        --dataset-config-file "configs/datasets/${DATASET}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
        --output-dir "${DIR}" \
        DATASET.NUM_SHOTS "${SHOTS}"
done
