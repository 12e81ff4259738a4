"""``python -m datasets.download``: placement, verification, resume, idempotence, refusals, offline messages.

The mirror is replaced by `FakeTransport` serving zip archives of the synthetic fixtures in the mirror's layout
(one top-level dataset folder per archive); the real `HubTransport` is checked against a patched client.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import pytest

from dassl.utils.transfer import DownloadError, HubTransport, RemoteFile, extract_archive
from datasets.download import CATALOG, main, resolve_datasets
from tests.helpers.dataset_fixtures import make_dataset_cfg, make_dtd, make_eurosat, make_fgvc_aircraft, make_imagenet_a
from tests.helpers.fake_transport import FakeTransport, tar_tree, zip_tree


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """Fixtures (source trees) and their archives as the mirror names them."""
    src = tmp_path_factory.mktemp("src")
    out = tmp_path_factory.mktemp("archives")
    fixtures = {
        "dtd": make_dtd(src, with_split_file=True),
        "eurosat": make_eurosat(src, per_class=4, with_split_file=True),
        "imagenet_a": make_imagenet_a(src),
        "fgvc_aircraft": make_fgvc_aircraft(src),
    }
    archives = {
        CATALOG[name].archive: zip_tree(f.dataset_dir, out / CATALOG[name].archive) for name, f in fixtures.items()
    }
    return fixtures, {name: path.read_bytes() for name, path in archives.items()}


def _run(capsys, *argv, transport) -> tuple[int, str, str]:
    """Exit code, stdout and stderr without the progress bars."""
    rc = main([str(a) for a in argv], transport=transport)
    captured = capsys.readouterr()
    err = "\n".join(line for line in captured.err.splitlines() if not line.startswith("unpack "))
    return rc, captured.out, err


def test_archives_land_in_the_documented_layout_and_the_readers_accept_them(mirror, tmp_path, capsys):
    fixtures, files = mirror
    fake = FakeTransport(files)
    root = tmp_path / "data"
    rc, out, err = _run(capsys, *fixtures, "--root", root, transport=fake)
    assert rc == 0, err
    for name, fixture in fixtures.items():
        assert _tree(root / CATALOG[name].folder) == _tree(fixture.dataset_dir), name
    assert sorted(p.name for p in root.iterdir()) == sorted(CATALOG[n].folder for n in fixtures)  # no staging left
    dtd = fixtures["dtd"].split
    assert (
        f"dtd: installed {root / 'dtd'} (train {len(dtd['train'])}, val {len(dtd['val'])}, test {len(dtd['test'])}; "
        f"3 classes" in out
    )
    assert "imagenet_a: installed" in out and "test 6; 3 classes" in out
    assert "differ from the published train/val/test 2,820/1,128/1,692" in err  # fixtures are tiny
    # the project's reader, as train.py builds it, reads the installed folder
    cfg = make_dataset_cfg(root, "DescribableTextures", tmp_path / "cache", val_source="val")
    from dassl.data.datasets import build_dataset

    ds = build_dataset(cfg)
    assert [d.impath for d in ds.val] == [str(root / "dtd" / p) for p, _, _ in dtd["val"]]


def test_a_second_run_only_verifies_and_touches_nothing(mirror, tmp_path, capsys):
    fixtures, files = mirror
    root = tmp_path / "data"
    assert _run(capsys, "dtd", "eurosat", "--root", root, transport=FakeTransport(files))[0] == 0
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    handlers, level = list(logging.getLogger().handlers), logging.getLogger().level
    again = FakeTransport(files)
    rc, out, _ = _run(capsys, "dtd", "eurosat", "--root", root, transport=again)
    assert rc == 0
    assert "dtd: present" in out and "eurosat: present" in out
    assert again.listings == 0 and again.fetches == []  # nothing to fetch: no network needed
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert (logging.getLogger().handlers, logging.getLogger().level) == (handlers, level)  # logging restored


def test_an_interrupted_transfer_resumes_and_installs_nothing_until_complete(mirror, tmp_path, capsys):
    fixtures, files = mirror
    root = tmp_path / "data"
    fake = FakeTransport(files, drop_after={"dtd.zip": 1000})
    rc, _, err = _run(capsys, "dtd", "--root", root, transport=fake)
    assert rc == 1
    assert err.strip().count("\n") == 0 and "connection reset" in err and "rerun" in err
    assert not (root / "dtd").exists()
    partial = list((root / ".promptkd-download").rglob("*.part"))
    assert [p.stat().st_size for p in partial] == [1000]
    rc, out, err = _run(capsys, "dtd", "--root", root, transport=fake)
    assert rc == 0, err
    assert fake.fetches == [("dtd.zip", 0), ("dtd.zip", 1000)]  # the second transfer continued at byte 1000
    assert _tree(root / "dtd") == _tree(fixtures["dtd"].dataset_dir)
    assert not (root / ".promptkd-download").exists()


@pytest.mark.parametrize(
    "skip, message",
    [
        (
            "images/banded/banded_0001.jpg",
            "the DescribableTextures reader refused dtd.zip:dtd: 1 of 15 image(s) named by split file "
            "dtd.zip:dtd/split_zhou_DescribableTextures.json are missing: dtd.zip:dtd/images/banded/banded_0001.jpg",
        ),
        ("split_zhou_DescribableTextures.json", "lacks split_zhou_DescribableTextures.json"),
    ],
)
def test_an_archive_missing_a_file_is_refused_and_leaves_nothing(mirror, tmp_path, capsys, skip, message):
    fixtures, _ = mirror
    assert (fixtures["dtd"].dataset_dir / skip).is_file()
    archive = zip_tree(fixtures["dtd"].dataset_dir, tmp_path / "dtd.zip", skip=(skip,))
    root = tmp_path / "data"
    rc, out, err = _run(capsys, "dtd", "--root", root, transport=FakeTransport.from_paths({"dtd.zip": archive}))
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "nothing was installed" in lines[0]
    assert "DATASETS.md, section `dtd`" in lines[0]
    assert sorted(p.name for p in root.iterdir()) == []


def test_a_corrupt_transfer_is_deleted_and_reported(mirror, tmp_path, capsys):
    _, files = mirror
    root = tmp_path / "data"
    broken = bytearray(files["dtd.zip"])
    broken[100] ^= 0xFF
    fake = FakeTransport(files, served={"dtd.zip": bytes(broken)})
    rc, _, err = _run(capsys, "dtd", "--root", root, transport=fake)
    assert rc == 1 and "arrived corrupt (SHA-256" in err and "the file was deleted" in err
    assert not (root / "dtd").exists() and not list(root.rglob("dtd.zip"))


def test_an_archive_without_the_wrapper_folder_is_placed_the_same(mirror, tmp_path, capsys):
    fixtures, _ = mirror
    archive = zip_tree(fixtures["eurosat"].dataset_dir, tmp_path / "eurosat.zip", arc_root="")
    root = tmp_path / "data"
    rc, _, err = _run(capsys, "EuroSAT", "--root", root, transport=FakeTransport.from_paths({"eurosat.zip": archive}))
    assert rc == 0, err
    assert _tree(root / "eurosat") == _tree(fixtures["eurosat"].dataset_dir)


def test_offline_is_one_line_naming_the_url_and_the_manual_route(tmp_path, capsys):
    root = tmp_path / "data"
    rc, out, err = _run(capsys, "dtd", "--root", root, transport=FakeTransport({}, offline=True))
    assert rc == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("error: listing https://example.invalid/mirror failed: unreachable")
    assert "download the archives by hand from https://example.invalid/mirror" in line and "DATASETS.md" in line
    assert not root.exists()


def test_dry_run_lists_urls_sizes_and_targets_and_fetches_nothing(mirror, tmp_path, capsys):
    _, files = mirror
    root = tmp_path / "data"
    fake = FakeTransport(files)
    rc, out, _ = _run(capsys, "dtd", "imagenet", "ucf101", "--root", root, "--dry-run", transport=fake)
    assert rc == 0 and fake.fetches == [] and not root.exists()
    lines = out.strip().splitlines()
    assert f"dtd: https://example.invalid/mirror/dtd.zip (0.00 GB) -> {root / 'dtd'}" in lines
    assert f"imagenet: manual download (DATASETS.md, section `imagenet`) -> {root / 'imagenet'}" in lines
    assert "ucf101: ucf101.zip is NOT in https://example.invalid/mirror" in lines


def test_imagenet_prints_what_to_do(tmp_path, capsys):
    rc, _, err = _run(capsys, "imagenet", "--root", tmp_path, transport=FakeTransport({}))
    assert rc == 0
    assert "imagenet: not on the mirror" in err and "https://image-net.org" in err and "DATASETS.md" in err


def test_an_existing_incomplete_folder_is_reported_and_left_alone(mirror, tmp_path, capsys):
    fixtures, files = mirror
    root = tmp_path / "data"
    (root / "dtd").mkdir(parents=True)
    (root / "dtd" / "mine.txt").write_text("user data")
    fake = FakeTransport(files)
    rc, _, err = _run(capsys, "dtd", "--root", root, transport=fake)
    assert rc == 1 and "exists but is incomplete" in err and "left untouched" in err
    assert _tree(root / "dtd") == {"mine.txt": b"user data"} and fake.fetches == []


def test_unknown_names_and_aliases():
    assert [d.name for d in resolve_datasets(["DescribableTextures", "caltech-101", "Food101", "DTD"])] == [
        "dtd",
        "caltech101",
        "food101",
    ]
    assert len(resolve_datasets(["all"])) == 15
    with pytest.raises(DownloadError, match="unknown dataset 'cifar10'; choose from: all, imagenet"):
        resolve_datasets(["cifar10"])


def test_members_outside_the_target_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dtd/ok.txt", b"ok")
        zf.writestr("../escaped.txt", b"no")
    with pytest.raises(DownloadError, match="outside the target folder"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_hub_transport_reports_offline_and_falls_back_to_a_dataset_repository(monkeypatch):
    import huggingface_hub
    from huggingface_hub.hf_api import RepoFile

    def unreachable(self, repo_id, **kw):
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", unreachable)
    with pytest.raises(DownloadError) as info:
        HubTransport("owner/mirror").list_files()
    assert str(info.value) == (
        "listing https://huggingface.co/owner/mirror failed: unreachable (ConnectionError: [Errno -2] Name or "
        "service not known)"
    )

    class RepositoryNotFoundError(Exception):
        pass

    def only_datasets(self, repo_id, repo_type=None, revision=None, **kw):
        if repo_type != "dataset":
            raise RepositoryNotFoundError("404")
        lfs = {"size": 5, "oid": "ab" * 32, "pointerSize": 130}
        return iter([RepoFile(path="dtd.zip", size=5, oid="x", lfs=lfs)])

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", only_datasets)
    transport = HubTransport("owner/mirror", fallback_repo_type="dataset")
    assert transport.list_files() == [RemoteFile("dtd.zip", 5, "ab" * 32)]
    assert transport.source == "https://huggingface.co/datasets/owner/mirror"
    assert (
        transport.url_of(RemoteFile("dtd.zip")) == "https://huggingface.co/datasets/owner/mirror/resolve/main/dtd.zip"
    )


def test_tar_archives_unpack_the_same_and_links_are_refused(mirror, tmp_path):
    fixtures, _ = mirror
    folder = fixtures["dtd"].dataset_dir
    extract_archive(tar_tree(folder, tmp_path / "dtd.tar.gz"), tmp_path / "out")
    assert _tree(tmp_path / "out" / "dtd") == _tree(folder)
    link = tmp_path / "link"
    link.mkdir()
    (link / "escape").symlink_to("/etc/passwd")
    with pytest.raises(DownloadError, match="member 'link/escape' is a link or device; refused"):
        extract_archive(tar_tree(link, tmp_path / "link.tar"), tmp_path / "out2")
