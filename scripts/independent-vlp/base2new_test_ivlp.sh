#!/usr/bin/env bash
# IVLP base-to-novel: evaluate the base-class model of the matching train script on the NOVEL classes
# (--eval-only, epoch 20; methods.md §4.11).
# usage: DATA=/path/to/datasets bash scripts/independent-vlp/base2new_test_ivlp.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=IVLP
CFG=vit_b16_c2_ep20_batch4_4+4ctx
SHOTS=16
LOADEP=20
SUB=new

require_data
require_int SEED "${SEED}"
require_dataset "${DATASET}"
require_config "${TRAINER}" "${CFG}"

COMMON_DIR=${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
MODEL_DIR=${OUTPUT_ROOT}/base2new/train_base/${COMMON_DIR}
DIR=${OUTPUT_ROOT}/base2new/test_${SUB}/${COMMON_DIR}
skip_if_finished "${DIR}" && exit 0
[[ -d "${MODEL_DIR}" ]] || die "no trained model in ${MODEL_DIR}; run the matching train script first"

run_train \
    --root "${DATA}" \
    --seed "${SEED}" \
    --trainer "${TRAINER}" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
    --output-dir "${DIR}" \
    --model-dir "${MODEL_DIR}" \
    --load-epoch "${LOADEP}" \
    --eval-only \
    DATASET.NUM_SHOTS "${SHOTS}" \
    DATASET.SUBSAMPLE_CLASSES "${SUB}"
