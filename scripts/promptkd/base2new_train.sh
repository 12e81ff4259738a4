#!/usr/bin/env bash
# PromptKD base-to-novel distillation: the student learns from the teacher on the unlabeled
# train images of ALL classes and is evaluated on the base and the novel classes of the test split.
# KD_WEIGHT per dataset comes from configs/kd_weights.yaml.
# usage: DATA=/path/to/datasets bash scripts/promptkd/base2new_train.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=PromptKD
CFG=vit_b16_c2_ep20_batch8_4+4ctx
SHOTS=0

check_method_args "${TRAINER}" "${CFG}" "${DATASET}" SEED "${SEED}"
KD_WEIGHT="$(kd_weight "${DATASET}")"
# upstream PromptKD names the folder seed_N (the other methods: seedN), and passes no SUBSAMPLE_CLASSES
DIR=${OUTPUT_ROOT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed_${SEED}
skip_if_finished "${DIR}" && exit 0
launch_train "${DIR}" "${TRAINER}" "${CFG}" "${DATASET}" "${SEED}" \
    DATASET.NUM_SHOTS "${SHOTS}" \
    TRAINER.MODAL base2novel \
    TRAINER.PROMPTKD.TEMPERATURE 1.0 \
    TRAINER.PROMPTKD.KD_WEIGHT "${KD_WEIGHT}"
