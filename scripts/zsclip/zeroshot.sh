#!/usr/bin/env bash
# Zero-shot CLIP (hand-written template per dataset) evaluated on DATASET; the backbone and input settings come
# from the CoOp YAML named CFG (rn50, rn101, vit_b32, vit_b16). No seed, no training.
# usage: DATA=/path/to/datasets bash scripts/zsclip/zeroshot.sh DATASET CFG
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET CFG" 2 $#
DATASET=$1
CFG=$2
TRAINER=ZeroshotCLIP

require_data
require_dataset "${DATASET}"
require_config CoOp "${CFG}"

DIR=${OUTPUT_ROOT}/${TRAINER}/${CFG}/${DATASET}
skip_if_finished "${DIR}" && exit 0

run_train \
    --root "${DATA}" \
    --trainer "${TRAINER}" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/CoOp/${CFG}.yaml" \
    --output-dir "${DIR}" \
    --eval-only
