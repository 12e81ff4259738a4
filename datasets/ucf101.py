"""UCF101 middle frames: split 01 lists; CamelCase actions become ``Camel_Case`` folders."""

from __future__ import annotations

import os
import random
import re

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .reader_base import BenchmarkDataset, Lists, annotation_lines, bad_annotation_line
from .split_builders import split_trainval


def rename_action(action: str) -> str:
    """``ApplyEyeMakeup`` -> ``Apply_Eye_Makeup``, ``YoYo`` -> ``Yo_Yo`` (runs of ``[A-Z][^A-Z]*``)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(BenchmarkDataset):
    """101 actions; train/val = 80/20 of ``trainlist01`` per class, test = ``testlist01``."""

    dataset_dir = "ucf101"
    image_folder = "UCF-101-midframes"
    split_file_name = "split_zhou_UCF101.json"
    raw_files = ("ucfTrainTestlist/classInd.txt", "ucfTrainTestlist/trainlist01.txt", "ucfTrainTestlist/testlist01.txt")
    layout = """\
ucf101/
  split_zhou_UCF101.json
  UCF-101-midframes/<Renamed_Action>/<video>.jpg ...
  ucfTrainTestlist/classInd.txt, trainlist01.txt, testlist01.txt   (only needed without the split file)"""

    def generate_split(self, rng: random.Random) -> Lists:
        lists = os.path.join(self.dataset_dir, "ucfTrainTestlist")
        cname2lab = {}
        for lineno, line in annotation_lines(os.path.join(lists, "classInd.txt")):
            fields = line.split(" ")
            if len(fields) != 2 or not fields[0].isdigit():
                raise bad_annotation_line(
                    f"expected '<index> <Action>', got {line!r}",
                    f"{lists}/classInd.txt",
                    lineno,
                )
            cname2lab[fields[1]] = int(fields[0]) - 1
        trainval = self.read_data(cname2lab, os.path.join(lists, "trainlist01.txt"))
        test = self.read_data(cname2lab, os.path.join(lists, "testlist01.txt"))
        train, val = split_trainval(trainval, p_val=0.2, rng=rng)
        return train, val, test

    def read_data(self, cname2lab: dict[str, int], path: str) -> list[Datum]:
        """Lines ``<Action>/<video>.avi[ <index>]``; the frame is ``<Renamed_Action>/<video>.jpg``."""
        items = []
        for lineno, line in annotation_lines(path):
            action, _, filename = line.split(" ")[0].partition("/")
            if action not in cname2lab:
                raise bad_annotation_line(
                    f"action {action!r} is not listed in classInd.txt",
                    path,
                    lineno,
                )
            renamed = rename_action(action)
            impath = os.path.join(self.image_dir, renamed, filename.replace(".avi", ".jpg"))
            items.append(Datum(impath=impath, label=cname2lab[action], classname=renamed, check=False))
        return items
