#!/usr/bin/env bash
# PromptKD cross-dataset distillation: the ImageNet-trained teacher
# (teacher_model/ImageNet-xd/...) is distilled into the student on the unlabeled train images of the target
# dataset; evaluation on all its classes. KD_WEIGHT per dataset comes from configs/kd_weights.yaml.
# usage: DATA=/path/to/datasets bash scripts/promptkd/xd_train.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=PromptKD
CFG=vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets
SHOTS=0

check_method_args "${TRAINER}" "${CFG}" "${DATASET}" SEED "${SEED}"
KD_WEIGHT="$(kd_weight "${DATASET}")"
run_xd_train "${TRAINER}" "${CFG}" "${SHOTS}" "${DATASET}" "${SEED}" \
    DATASET.SUBSAMPLE_CLASSES all \
    TRAINER.PROMPTKD.TEMPERATURE 1.0 \
    TRAINER.PROMPTKD.KD_WEIGHT "${KD_WEIGHT}" \
    TRAINER.MODAL cross
