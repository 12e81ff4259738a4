#!/usr/bin/env bash
# MaPLe cross-dataset: train on all classes of the source dataset (ImageNet in the paper) with 16 shots per class
# (methods.md §4.11); the cross-dataset test script evaluates these weights on other datasets.
# usage: DATA=/path/to/datasets bash scripts/maple/xd_train_maple.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=MaPLe
CFG=vit_b16_c2_ep5_batch4_2ctx_cross_datasets
SHOTS=16

require_data
require_int SEED "${SEED}"
require_dataset "${DATASET}"
require_config "${TRAINER}" "${CFG}"

DIR=${OUTPUT_ROOT}/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
skip_if_finished "${DIR}" && exit 0

run_train \
    --root "${DATA}" \
    --seed "${SEED}" \
    --trainer "${TRAINER}" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
    --output-dir "${DIR}" \
    DATASET.NUM_SHOTS "${SHOTS}"
