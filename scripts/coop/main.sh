#!/usr/bin/env bash
# CoOp few-shot training for seeds 1-3.
# usage: DATA=/path/to/datasets bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC
#   CFG  a configs/trainers/CoOp/<CFG>.yaml (rn50, vit_b16_ep50, ...)
#   CTP  class-token position: end, middle or front
#   NCTX number of context tokens; SHOTS shots per class (1, 2, 4, 8, 16); CSC class-specific context True/False
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET CFG CTP NCTX SHOTS CSC" 6 $#
DATASET=$1
CFG=$2
CTP=$3
NCTX=$4
SHOTS=$5
CSC=$6
TRAINER=CoOp

check_method_args "${TRAINER}" "${CFG}" "${DATASET}"
require_choice CTP "${CTP}" end middle front
require_int NCTX "${NCTX}"
require_int SHOTS "${SHOTS}"
require_choice CSC "${CSC}" True False

for SEED in 1 2 3; do
    DIR=${OUTPUT_ROOT}/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}
    skip_if_finished "${DIR}" && continue
    launch_train "${DIR}" "${TRAINER}" "${CFG}" "${DATASET}" "${SEED}" \
        TRAINER.COOP.N_CTX "${NCTX}" \
        TRAINER.COOP.CSC "${CSC}" \
        TRAINER.COOP.CLASS_TOKEN_POSITION "${CTP}" \
        DATASET.NUM_SHOTS "${SHOTS}"
done
