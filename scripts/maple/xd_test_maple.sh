#!/usr/bin/env bash
# MaPLe cross-dataset: evaluate the ImageNet-trained weights of the matching xd train script (epoch 2) on DATASET
# (all classes, --eval-only).
# usage: DATA=/path/to/datasets bash scripts/maple/xd_test_maple.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=MaPLe
CFG=vit_b16_c2_ep5_batch4_2ctx_cross_datasets
SHOTS=16
LOADEP=2

run_xd_test "${TRAINER}" "${CFG}" "${SHOTS}" "${LOADEP}" "${DATASET}" "${SEED}"
