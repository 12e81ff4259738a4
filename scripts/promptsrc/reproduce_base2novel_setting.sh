#!/usr/bin/env bash
# PromptSRC released weights: evaluate released base-to-novel weights (WEIGHTS_PATH/base/seedSEED, epoch 20) on the base and
# on the novel classes. Finished evaluations are skipped.
# usage: DATA=/path/to/datasets bash scripts/promptsrc/reproduce_base2novel_setting.sh DATASET SEED WEIGHTS_PATH
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED WEIGHTS_PATH" 3 $#
DATASET=$1
SEED=$2
WEIGHTSPATH=$(to_abs "$3")
TRAINER=PromptSRC
CFG=vit_b16_c2_ep20_batch4_4+4ctx
SHOTS=16
LOADEP=20

run_reproduce_base2new "${TRAINER}" "${CFG}" "${SHOTS}" "${LOADEP}" "${DATASET}" "${SEED}" "${WEIGHTSPATH}"
