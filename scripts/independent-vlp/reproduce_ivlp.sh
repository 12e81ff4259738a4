#!/usr/bin/env bash
# IVLP released weights: evaluate released base-to-novel weights (WEIGHTS_PATH/base/seedSEED, epoch 5) on the base and
# on the novel classes. Finished evaluations are skipped.
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

run_reproduce_base2new "${TRAINER}" "${CFG}" "${SHOTS}" "${LOADEP}" "${DATASET}" "${SEED}" "${WEIGHTSPATH}"
