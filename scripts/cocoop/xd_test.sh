#!/usr/bin/env bash
# CoCoOp cross-dataset: evaluate the ImageNet-trained weights of the matching xd train script (epoch 10) on DATASET
# (all classes, --eval-only; methods.md §4.11).
# usage: DATA=/path/to/datasets bash scripts/cocoop/xd_test.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=CoCoOp
CFG=vit_b16_c4_ep10_batch1_ctxv1
SHOTS=16
LOADEP=10

require_data
require_int SEED "${SEED}"
require_dataset "${DATASET}"
require_config "${TRAINER}" "${CFG}"

MODEL_DIR=${OUTPUT_ROOT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
DIR=${OUTPUT_ROOT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}
skip_if_finished "${DIR}" && exit 0
[[ -d "${MODEL_DIR}" ]] || die "no ImageNet-trained model in ${MODEL_DIR}; run the xd train script on imagenet first"

run_train \
    --root "${DATA}" \
    --seed "${SEED}" \
    --trainer "${TRAINER}" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
    --output-dir "${DIR}" \
    --model-dir "${MODEL_DIR}" \
    --load-epoch "${LOADEP}" \
    --eval-only
