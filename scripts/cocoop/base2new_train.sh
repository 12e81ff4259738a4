#!/usr/bin/env bash
# CoCoOp base-to-novel: train on the base classes with 16 shots per class (methods.md §3.0 base-to-novel protocol, §4.11);
# the end-of-training test is on the base classes. Novel accuracy: the matching test script.
# usage: DATA=/path/to/datasets bash scripts/cocoop/base2new_train.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=CoCoOp
CFG=vit_b16_c4_ep10_batch1_ctxv1
SHOTS=16

require_data
require_int SEED "${SEED}"
require_dataset "${DATASET}"
require_config "${TRAINER}" "${CFG}"

DIR=${OUTPUT_ROOT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
skip_if_finished "${DIR}" && exit 0

run_train \
    --root "${DATA}" \
    --seed "${SEED}" \
    --trainer "${TRAINER}" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
    --output-dir "${DIR}" \
    DATASET.NUM_SHOTS "${SHOTS}" \
    DATASET.SUBSAMPLE_CLASSES base
