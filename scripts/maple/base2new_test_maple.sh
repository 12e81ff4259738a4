#!/usr/bin/env bash
# MaPLe base-to-novel: evaluate the base-class model of the matching train script on the NOVEL classes
# (--eval-only, epoch 5).
# usage: DATA=/path/to/datasets bash scripts/maple/base2new_test_maple.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=MaPLe
CFG=vit_b16_c2_ep5_batch4_2ctx
SHOTS=16
LOADEP=5

run_base2new_test "${TRAINER}" "${CFG}" "${SHOTS}" "${LOADEP}" "${DATASET}" "${SEED}"
