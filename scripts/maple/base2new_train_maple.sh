#!/usr/bin/env bash
# MaPLe base-to-novel: train on the base classes with 16 shots per class (base-to-novel protocol);
# the end-of-training test is on the base classes. Novel accuracy: the matching test script.
# usage: DATA=/path/to/datasets bash scripts/maple/base2new_train_maple.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=MaPLe
CFG=vit_b16_c2_ep5_batch4_2ctx
SHOTS=16

run_base2new_train "${TRAINER}" "${CFG}" "${SHOTS}" "${DATASET}" "${SEED}"
