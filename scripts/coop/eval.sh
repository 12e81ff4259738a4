#!/usr/bin/env bash
# CoOp cross-dataset / domain-generalisation evaluation: the ImageNet 16-shot weights (nctx16, no CSC, class
# token at the end, epoch 50) evaluated on DATASET for seeds 1-3.
# usage: DATA=/path/to/datasets bash scripts/coop/eval.sh DATASET CFG
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET CFG" 2 $#
DATASET=$1
CFG=$2
TRAINER=CoOp
SHOTS=16
NCTX=16
CSC=False
CTP=end
LOADEP=50

check_method_args "${TRAINER}" "${CFG}" "${DATASET}"

for SEED in 1 2 3; do
    MODEL_DIR=${OUTPUT_ROOT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}
    DIR=${OUTPUT_ROOT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/${DATASET}/seed${SEED}
    skip_if_finished "${DIR}" && continue
    [[ -d "${MODEL_DIR}" ]] || die "no ImageNet-trained model in ${MODEL_DIR}; run scripts/coop/main.sh imagenet ${CFG} end 16 16 False first"
    launch_eval "${DIR}" "${MODEL_DIR}" "${LOADEP}" "${TRAINER}" "${CFG}" "${DATASET}" "${SEED}" \
        TRAINER.COOP.N_CTX "${NCTX}" \
        TRAINER.COOP.CSC "${CSC}" \
        TRAINER.COOP.CLASS_TOKEN_POSITION "${CTP}"
done
