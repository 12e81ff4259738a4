#!/usr/bin/env bash
# IVLP base-to-novel: evaluate the base-class model of the matching train script on the NOVEL classes
# (--eval-only, epoch 20).
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

run_base2new_test "${TRAINER}" "${CFG}" "${SHOTS}" "${LOADEP}" "${DATASET}" "${SEED}"
