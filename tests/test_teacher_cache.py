"""Teacher output cache: shards round-trip, damaged files are recomputed (and said in the log), and distillation
runs that fill or read the cache log the losses and accuracies of an uncached run; changed views miss."""

from __future__ import annotations

import logging
import os
import re

import pytest
import torch

from dassl.errors import ConfigError
from tests.helpers.tiny_clip import save_tiny_clip
from tests.helpers.trainer_runs import TEACHER_CLIP, distil_zero_shot, free_port
from trainers.common import FrozenTeacher, TeacherCache, TeacherView, batch_probe, tensor_fingerprint
from trainers.promptkd import PromptKD

FINGERPRINT = "ab" * 32


class Teacher:
    """A deterministic stand-in for a tower: features from the pixels, counting its runs."""

    def __init__(self, pixels: int = 3 * 4 * 4) -> None:
        self.runs = 0
        self.weight = torch.randn(pixels, 6, generator=torch.Generator().manual_seed(0))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        self.runs += 1
        return torch.nn.functional.normalize(image.flatten(1) @ self.weight, dim=-1)


def batches(count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 4, 4, generator=generator) for _ in range(count)]


def run_epoch(cache: TeacherCache, teacher: Teacher, images: list[torch.Tensor], epoch: int = 0) -> list:
    out = []
    for b, image in enumerate(images):
        view = TeacherView(epoch, b, b + 1 == len(images))
        out.append(cache.features(0, view, image, lambda image=image: teacher(image)))
    return out


def test_round_trip_in_shards(tmp_path):
    images, teacher = batches(5), Teacher()
    fill = TeacherCache(str(tmp_path), FINGERPRINT, shard_batches=2)
    first = run_epoch(fill, teacher, images)
    fill.close()
    assert (fill.hits, fill.misses, teacher.runs) == (0, 5, 5)
    files = sorted(p.name for p in (tmp_path / FINGERPRINT[:32] / "teacher0").iterdir())
    assert files == ["epoch0-shard0.pt", "epoch0-shard1.pt", "epoch0-shard2.pt"]
    hit = TeacherCache(str(tmp_path), FINGERPRINT, shard_batches=2)
    second = run_epoch(hit, teacher, images)
    assert (hit.hits, hit.misses, teacher.runs) == (5, 0, 5)
    for a, b, image in zip(first, second, images, strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, b) and torch.equal(a, teacher(image))
    assert re.fullmatch(r"teacher cache: 5 hits, 0 misses \(\d+\.\d MiB in .+\)", hit.summary())
    assert hit.size_bytes() == sum(p.stat().st_size for p in (tmp_path / FINGERPRINT[:32]).rglob("*.pt"))


def test_fp16_rounds_on_fill_and_hit_alike(tmp_path):
    images, teacher = batches(3), Teacher()
    fill = TeacherCache(str(tmp_path), FINGERPRINT, "fp16")
    first = run_epoch(fill, teacher, images)
    second = run_epoch(TeacherCache(str(tmp_path), FINGERPRINT, "fp16"), teacher, images)
    for a, b, image in zip(first, second, images, strict=True):
        assert torch.equal(a, b) and torch.equal(a, teacher(image).half().float())
        assert not torch.equal(a, teacher(image))  # rounding happened (on the miss too)
    shard = torch.load(fill.shard_path(0, 0, 0), weights_only=True)
    assert all(f.dtype == torch.float16 for f in shard["features"])


def test_other_pixels_for_a_stored_view_are_recomputed(tmp_path):
    teacher = Teacher()
    run_epoch(TeacherCache(str(tmp_path), FINGERPRINT), teacher, batches(2))
    other = batches(2, seed=1)
    other[1] = other[1].clone()
    cache = TeacherCache(str(tmp_path), FINGERPRINT)
    got = run_epoch(cache, teacher, other)
    assert (cache.hits, cache.misses, cache.changed) == (0, 2, 2)
    assert all(torch.equal(g, teacher(i)) for g, i in zip(got, other, strict=True))
    again = TeacherCache(str(tmp_path), FINGERPRINT)
    run_epoch(again, teacher, other)
    assert (again.hits, again.misses) == (2, 0)  # the shard now holds the new views


def test_probe_sees_one_changed_pixel():
    image = torch.rand(2, 3, 8, 8)
    changed = image.clone()
    changed[1, 2, 5, 3] += 1e-3
    assert not torch.equal(batch_probe(image), batch_probe(changed))
    assert torch.equal(batch_probe(image), batch_probe(image.clone()))


def _picture_on_plain_background() -> torch.Tensor:
    """A 32x32 picture whose object sits in the bottom-left corner, away from every sampled probe point."""
    image = torch.full((1, 3, 32, 32), 0.5)
    image[0, :, 28:31, 2:8] = torch.randint(0, 256, (3, 3, 6), generator=torch.Generator().manual_seed(0)) / 255
    return (image - 0.45) / 0.27


@pytest.mark.parametrize("dim", [-1, -2], ids=["horizontal", "vertical"])
def test_flipped_view_is_a_miss(tmp_path, dim):
    image = _picture_on_plain_background()
    flipped = image.flip(dim)
    assert not torch.equal(image, flipped)
    assert not torch.equal(batch_probe(image), batch_probe(flipped))
    teacher = Teacher(3 * 32 * 32)
    run_epoch(TeacherCache(str(tmp_path), FINGERPRINT), teacher, [image])
    cache = TeacherCache(str(tmp_path), FINGERPRINT)
    (got,) = run_epoch(cache, teacher, [flipped])
    assert (cache.hits, cache.misses, cache.changed) == (0, 1, 1)
    assert torch.equal(got, teacher(flipped)) and not torch.equal(got, teacher(image))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_feature(path):
    data = torch.load(path, weights_only=True)
    data["features"][0][0, 0] += 1.0  # checksum left as it was
    torch.save(data, path)


def _foreign(path):
    data = torch.load(path, weights_only=True)
    data["fingerprint"] = "cd" * 32
    torch.save(data, path)


def _garbage(path):
    path.write_bytes(b"not a shard at all")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_truncate, ""),
        (_flip_a_feature, "checksum mismatch"),
        (_foreign, "fingerprint differs"),
        (_garbage, ""),
    ],
)
def test_damaged_shard_is_logged_recomputed_and_rewritten(tmp_path, caplog, damage, reason):
    images, teacher = batches(3), Teacher()
    run_epoch(TeacherCache(str(tmp_path), FINGERPRINT), teacher, images)
    path = tmp_path / FINGERPRINT[:32] / "teacher0" / "epoch0-shard0.pt"
    damage(path)
    cache = TeacherCache(str(tmp_path), FINGERPRINT)
    with caplog.at_level(logging.WARNING, logger="trainers.common.teacher_cache"):
        got = run_epoch(cache, teacher, images)
    assert (cache.hits, cache.misses, cache.damaged) == (0, 3, 1)
    assert all(torch.equal(g, teacher(i)) for g, i in zip(got, images, strict=True))
    message = [r.getMessage() for r in caplog.records if "damaged shard" in r.getMessage()]
    assert len(message) == 1 and str(path) in message[0] and reason in message[0]
    assert "1 damaged shards rewritten" in cache.summary()
    again = TeacherCache(str(tmp_path), FINGERPRINT)
    run_epoch(again, teacher, images)
    assert (again.hits, again.misses, again.damaged) == (3, 0, 0)


def test_partly_filled_shard_is_completed(tmp_path):
    images, teacher = batches(3), Teacher()
    partial = TeacherCache(str(tmp_path), FINGERPRINT)
    for b in range(2):  # a run that stopped before the epoch's last batch, shard written at close
        partial.features(0, TeacherView(0, b), images[b], lambda b=b: teacher(images[b]))
    partial.close()
    resumed = TeacherCache(str(tmp_path), FINGERPRINT)
    run_epoch(resumed, teacher, images)
    assert (resumed.hits, resumed.misses) == (2, 1)
    complete = TeacherCache(str(tmp_path), FINGERPRINT)
    run_epoch(complete, teacher, images)
    assert (complete.hits, complete.misses) == (3, 0)


def test_fingerprint_covers_names_values_and_settings():
    weight = torch.ones(3)
    base = tensor_fingerprint([("w", weight)], {"seed": 1})
    assert base == tensor_fingerprint([("w", weight.clone())], {"seed": 1})
    assert base != tensor_fingerprint([("w", weight + 1e-7)], {"seed": 1})
    assert base != tensor_fingerprint([("v", weight)], {"seed": 1})
    assert base != tensor_fingerprint([("w", weight.double())], {"seed": 1})
    assert base != tensor_fingerprint([("w", weight)], {"seed": 2})


# ---------------------------------------------------------------------------------------------- distillation runs
def test_cached_runs_give_the_uncached_losses_and_accuracies(trainer_env, tmp_path, kd_step_losses, monkeypatch):
    cache = ("TRAINER.PROMPTKD.TEACHER_CACHE", str(tmp_path / "cache"))
    plain_losses, plain_acc, _ = distil_zero_shot(trainer_env, tmp_path / "plain", kd_step_losses)
    fill_losses, fill_acc, fill = distil_zero_shot(trainer_env, tmp_path / "fill", kd_step_losses, *cache)
    tower_runs = []
    compute = FrozenTeacher._compute_features
    monkeypatch.setattr(FrozenTeacher, "_compute_features", lambda self, x: tower_runs.append(1) or compute(self, x))
    hit_losses, hit_acc, hit = distil_zero_shot(trainer_env, tmp_path / "hit", kd_step_losses, *cache)
    assert tower_runs == []  # the hit run never ran the teacher's image tower
    assert len(plain_losses) == 2 * fill.num_batches and plain_acc
    assert plain_losses == fill_losses == hit_losses
    assert plain_acc == fill_acc == hit_acc
    steps = len(plain_losses)
    assert (fill.teacher_cache.hits, fill.teacher_cache.misses) == (0, steps)
    assert (hit.teacher_cache.hits, hit.teacher_cache.misses) == (steps, 0)
    assert hit.teacher_cache.directory == fill.teacher_cache.directory
    log = (tmp_path / "hit" / "log.txt").read_text()
    assert re.search(rf"teacher cache: {steps} hits, 0 misses \(\d+\.\d MiB in ", log)


def test_fp16_cache_fill_and_hit_runs_agree(trainer_env, tmp_path, kd_step_losses):
    cache = ("TRAINER.PROMPTKD.TEACHER_CACHE", str(tmp_path / "cache"), "TRAINER.PROMPTKD.TEACHER_CACHE_DTYPE", "fp16")
    fill_losses, fill_acc, fill = distil_zero_shot(trainer_env, tmp_path / "fill", kd_step_losses, *cache)
    hit_losses, hit_acc, hit = distil_zero_shot(trainer_env, tmp_path / "hit", kd_step_losses, *cache)
    assert hit.teacher_cache.misses == 0 and hit.teacher_cache.hits == len(hit_losses) > 0
    assert fill_losses == hit_losses and fill_acc == hit_acc  # rounded to fp16 on the miss as on the hit
    shard = next((tmp_path / "cache").rglob("*.pt"))
    assert torch.load(shard, weights_only=True)["features"][0].dtype == torch.float16


def test_changed_seed_transform_teacher_or_compiler_misses(trainer_env, tmp_path, kd_step_losses):
    cache = ("TRAINER.PROMPTKD.TEACHER_CACHE", str(tmp_path / "cache"))
    _, _, fill = distil_zero_shot(trainer_env, tmp_path / "fill", kd_step_losses, *cache)
    other_teacher = tmp_path / "other-teacher.pt"
    save_tiny_clip(other_teacher, **{**TEACHER_CLIP, "seed": 7})
    changes = {
        "seed": ((), ("--seed", "2")),
        "transform": (("INPUT.TRANSFORMS", "['random_resized_crop', 'normalize']"), ()),
        "teacher": (("TRAINER.PROMPTKD.TEACHER_CLIP", str(other_teacher)), ()),
        "compiled": (("TRAIN.COMPILE", "default", "TRAIN.COMPILE_BACKEND", "aot_eager"), ()),  # other last bits
    }
    directories = {fill.teacher_cache.directory}
    for name, (change, flags) in changes.items():
        _, _, run = distil_zero_shot(trainer_env, tmp_path / name, kd_step_losses, *cache, *change, flags=flags)
        assert run.teacher_cache.hits == 0 and run.teacher_cache.misses == 2 * run.num_batches, name
        directories.add(run.teacher_cache.directory)
    assert len(directories) == 1 + len(changes)
    _, _, again = distil_zero_shot(trainer_env, tmp_path / "again", kd_step_losses, *cache)
    assert again.teacher_cache.misses == 0  # the other runs' folders left the first one intact


def test_longer_run_reads_the_shorter_runs_epochs_and_a_deeper_student_misses(trainer_env, tmp_path, kd_step_losses):
    cache = ("TRAINER.PROMPTKD.TEACHER_CACHE", str(tmp_path / "cache"))
    three_epochs = ("OPTIM.MAX_EPOCH", "3")
    plain_losses, plain_acc, _ = distil_zero_shot(trainer_env, tmp_path / "plain", kd_step_losses, *three_epochs)
    _, _, fill = distil_zero_shot(trainer_env, tmp_path / "fill", kd_step_losses, *cache)  # 2 epochs
    losses, acc, longer = distil_zero_shot(trainer_env, tmp_path / "longer", kd_step_losses, *cache, *three_epochs)
    steps = fill.num_batches
    assert (longer.teacher_cache.hits, longer.teacher_cache.misses) == (2 * steps, steps)
    assert longer.teacher_cache.directory == fill.teacher_cache.directory
    assert losses == plain_losses and acc == plain_acc
    # A student with other prompt depth draws its initial values differently: other views, recomputed.
    depth = ("TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", "1")
    deeper_plain, _, _ = distil_zero_shot(trainer_env, tmp_path / "depth-plain", kd_step_losses, *depth)
    deeper, _, run = distil_zero_shot(trainer_env, tmp_path / "depth", kd_step_losses, *cache, *depth)
    assert run.teacher_cache.hits == 0 and run.teacher_cache.changed == run.teacher_cache.misses == 2 * steps
    assert deeper == deeper_plain


def test_cache_killed_mid_fill_is_completed_by_the_next_run(trainer_env, tmp_path, kd_step_losses, monkeypatch):
    cache = ("TRAINER.PROMPTKD.TEACHER_CACHE", str(tmp_path / "cache"))
    plain_losses, _, _ = distil_zero_shot(trainer_env, tmp_path / "plain", kd_step_losses)
    original = PromptKD.forward_backward

    def killed_in_epoch_2(self, batch):
        if self.epoch == 1 and self.batch_idx == self.num_batches - 1:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(PromptKD, "forward_backward", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        distil_zero_shot(trainer_env, tmp_path / "killed", kd_step_losses, *cache)
    monkeypatch.setattr(PromptKD, "forward_backward", original)
    shards = list((tmp_path / "cache").rglob("*.pt"))
    assert [p.name for p in shards] == ["epoch0-shard0.pt"]  # epoch 1's shard was still in memory
    rerun_losses, _, rerun = distil_zero_shot(trainer_env, tmp_path / "rerun", kd_step_losses, *cache)
    steps = rerun.num_batches
    assert steps >= 2  # epoch 2 was killed with part of its shard filled in memory
    assert (rerun.teacher_cache.hits, rerun.teacher_cache.misses) == (steps, steps)
    assert rerun_losses == plain_losses
    complete_losses, _, complete = distil_zero_shot(trainer_env, tmp_path / "complete", kd_step_losses, *cache)
    assert (complete.teacher_cache.hits, complete.teacher_cache.misses) == (2 * steps, 0)
    assert complete_losses == plain_losses


def test_cache_settings_are_checked_before_anything_is_written(trainer_env, tmp_path, kd_step_losses):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="TEACHER_CACHE_DTYPE is 'bf16'"):
        distil_zero_shot(trainer_env, tmp_path / "a", kd_step_losses, "TRAINER.PROMPTKD.TEACHER_CACHE_DTYPE", "bf16")
    with pytest.raises(ConfigError, match="is a file"):
        distil_zero_shot(trainer_env, tmp_path / "b", kd_step_losses, "TRAINER.PROMPTKD.TEACHER_CACHE", str(a_file))
    below_a_file = str(a_file / "cache")  # failed at the first shard write, after an epoch of training
    with pytest.raises(ConfigError, match="a file is in the way"):
        distil_zero_shot(trainer_env, tmp_path / "c", kd_step_losses, "TRAINER.PROMPTKD.TEACHER_CACHE", below_a_file)
    assert a_file.read_text() == "x" and kd_step_losses == []


def _ddp_worker(rank: int, world: int, port: int, env: dict, out: str, cache: str, expect_hits: bool) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    _, _, trainer = distil_zero_shot(env, out, [], "TRAINER.PROMPTKD.TEACHER_CACHE", cache)
    assert trainer.distributed
    cached = trainer.teacher_cache
    steps = 2 * trainer.num_batches
    assert (cached.hits, cached.misses) == ((steps, 0) if expect_hits else (0, steps)), (rank, cached.summary())


@pytest.mark.slow
def test_ddp_ranks_keep_their_own_caches(trainer_env, tmp_path):
    import torch.multiprocessing as mp

    cache = tmp_path / "cache"
    for run, expect_hits in (("fill", False), ("hit", True)):
        args = (2, free_port(), trainer_env, str(tmp_path / run), str(cache), expect_hits)
        mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    folders = sorted(p.name for p in cache.iterdir())
    assert len(folders) == 2  # one fingerprint per rank: each rank sees its own share of the views
    for folder in folders:
        assert list((cache / folder / "teacher0").glob("epoch*-shard0.pt"))
