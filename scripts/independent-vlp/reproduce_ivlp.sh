#!/usr/bin/env bash
# IVLP released weights: evaluate released base-to-novel weights (WEIGHTS_PATH/base/seedSEED, epoch 5) on the base and
# on the novel classes (methods.md §4.11). Finished evaluations are skipped.
# usage: DATA=/path/to/datasets bash scripts/independent-vlp/reproduce_ivlp.sh DATASET SEED WEIGHTS_PATH
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED WEIGHTS_PATH" 3 $#
DATASET=$1
SEED=$2
WEIGHTSPATH=$(to_abs "$3")
TRAINER=IVLP
CFG=vit_b16_c2_ep20_batch4_4+4ctx
SHOTS=16
LOADEP=5

require_data
require_int SEED "${SEED}"
require_dataset "${DATASET}"
require_config "${TRAINER}" "${CFG}"

COMMON_DIR=${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
MODEL_DIR=${WEIGHTSPATH}/base/seed${SEED}
[[ -d "${MODEL_DIR}" ]] || die "no weights in ${MODEL_DIR}; WEIGHTS_PATH must hold base/seed<SEED>/"

for SUB in base new; do
    DIR=${OUTPUT_ROOT}/base2new/test_${SUB}/${COMMON_DIR}
    skip_if_finished "${DIR}" && continue
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
done
