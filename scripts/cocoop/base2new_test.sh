#!/usr/bin/env bash
# CoCoOp base-to-novel: evaluate the base-class model of the matching train script on the NOVEL classes
# (--eval-only, epoch 10).
# usage: DATA=/path/to/datasets bash scripts/cocoop/base2new_test.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=CoCoOp
CFG=vit_b16_c4_ep10_batch1_ctxv1
SHOTS=16
LOADEP=10

run_base2new_test "${TRAINER}" "${CFG}" "${SHOTS}" "${LOADEP}" "${DATASET}" "${SEED}"
