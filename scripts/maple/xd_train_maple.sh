#!/usr/bin/env bash
# MaPLe cross-dataset: train on all classes of the source dataset (ImageNet in the paper) with 16 shots per class;
# the cross-dataset test script evaluates these weights on other datasets.
# usage: DATA=/path/to/datasets bash scripts/maple/xd_train_maple.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=MaPLe
CFG=vit_b16_c2_ep5_batch4_2ctx_cross_datasets
SHOTS=16

run_xd_train "${TRAINER}" "${CFG}" "${SHOTS}" "${DATASET}" "${SEED}"
