"""Output stems: a function of the image's key alone, different for different keys, capped in length."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explain import ExplainConfig, RunOptions, run_explanations
from explain.errors import ExplainError
from explain.manifest import read_manifests
from explain.sources import MAX_STEM_BYTES, collect_sources, output_stem
from tests.explain.test_explainer import red_square_detector, red_square_scene

CONFIG = ExplainConfig(num_samples=16, num_segments=4)


@pytest.mark.parametrize("key, stem", [
    ("cat.jpg", "cat"),  # Clarify's names for the usual case
    ("064.elephant-101_064_0003.jpg", "064.elephant-101_064_0003"),
    ("a/b/cat.jpg", "a__b__cat"),
    ("cat.png", "cat.png"),  # other suffixes stay: cat.jpg and cat.png never share outputs
    ("cat.jpeg", "cat.jpeg"),
    ("IMG_0001.JPG", "IMG_0001.JPG"),
    ("a_2.png", "a_2.png"),
    ("chat noir #1.jpg", "chat noir #1"),
    ("猫/写真.jpg", "猫__写真"),
])
def test_readable_stems(key, stem):
    assert output_stem(key) == stem


@pytest.mark.parametrize("key, readable", [
    ("a__b.jpg", "a__b"),  # would read like a/b.jpg
    ("a_/b.jpg", "a___b"),  # would read like a/_b.jpg
    ("cat.png.jpg", "cat.png"),  # would read like cat.png
    ("x-0123456789ab.jpg", "x-0123456789ab"),  # would read like a shortened stem
    (".hidden/cat.jpg", "hidden__cat"),  # a hidden output file otherwise
    ("notes.txt", "notes.txt"),  # a file argument of another type
    ("tab\there.jpg", "tab_here"),
])
def test_ambiguous_keys_get_a_hash_of_the_key(key, readable):
    import hashlib

    assert output_stem(key) == f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def test_long_keys_are_shortened_to_a_readable_part_and_a_hash():
    key = "/".join(["folder-" + "x" * 90] * 3) + "/photo.jpg"
    stem = output_stem(key)
    assert len(stem.encode()) == MAX_STEM_BYTES and stem.startswith("folder-xxx")
    assert stem != output_stem(key.replace("photo", "photo2"))
    multibyte = "写" * 200 + ".jpg"  # cut on a character boundary
    assert len(output_stem(multibyte).encode()) <= MAX_STEM_BYTES
    assert output_stem(multibyte).encode().decode() == output_stem(multibyte)


def test_stems_are_unique_over_adversarial_keys():
    pieces = ["a", "b", "_", "__", "/", ".", ".jpg", ".png", ".JPG", ".jpeg", "-", "0123456789ab", "x" * 60, "é"]
    generator = random.Random(0)
    keys = {"".join(generator.choice(pieces) for _ in range(generator.randint(1, 9))) + generator.choice(
        [".jpg", ".png", ".jpeg", ".JPG"]) for _ in range(20_000)}
    stems = {output_stem(key) for key in keys}
    assert len(stems) == len(keys)
    for stem in stems:
        assert "/" not in stem and not stem.startswith((".", "-")) and len(stem.encode()) <= MAX_STEM_BYTES


def save(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(red_square_scene(seed=seed)).save(path)


def run(images, out, **options):
    return run_explanations(images, red_square_detector, CONFIG, out, RunOptions(progress=False, **options))


def test_a_jpg_a_png_and_a_2_png_write_apart(tmp_path):
    folder = tmp_path / "images"
    for seed, name in enumerate(["a.jpg", "a.png", "a_2.png"]):
        save(folder / name, seed)
    summary = run([folder], tmp_path / "out")
    assert [item["stem"] for item in summary["images"]] == ["a", "a.png", "a_2.png"]
    for item in summary["images"]:  # each npz holds its own image's segments
        with np.load(tmp_path / "out" / f"{item['stem']}_shap.npz") as arrays:
            assert int(arrays["model_calls"]) == item["model_calls"]
        assert all((tmp_path / "out" / name).is_file() for name in item["files"])
    assert len({name for item in summary["images"] for name in item["files"]}) == sum(
        len(item["files"]) for item in summary["images"])


def test_a_resumed_run_keeps_the_stems_when_images_are_added(tmp_path):
    folder = tmp_path / "images"
    save(folder / "a.png", 0)
    run([folder], tmp_path / "out")
    save(folder / "a.jpg", 1)  # sorts before a.png
    summary = run([folder], tmp_path / "out")
    assert summary["totals"]["explained_now"] == 1
    assert {entry["key"]: entry["stem"] for entry in read_manifests(tmp_path / "out")} == {
        "a.png": "a.png", "a.jpg": "a"}


def test_shards_that_see_only_their_own_images_agree(tmp_path):
    """Like the hosts of a Processing job: each sees its share only, all write into one --out."""
    for seed, name in enumerate(["x/a.jpg", "x/a.png"]):
        save(tmp_path / f"host{seed}" / name, seed)
        run([tmp_path / f"host{seed}"], tmp_path / "out", manifest_tag=f"host{seed}", merge=False)
    from explain.runner import merge_outputs

    summary = merge_outputs(tmp_path / "out")
    assert sorted(item["stem"] for item in summary["images"]) == ["x__a", "x__a.png"]
    # review 19: one key given alone was read as its characters, and the report rewritten with none
    one = merge_outputs(tmp_path / "out", keys="x/a.png")
    assert [item["stem"] for item in one["images"]] == ["x__a.png"] and "unfinished" not in one["totals"]
    # review 20: keys as a generator were read once (the failures), and the report rewritten with none
    both = merge_outputs(tmp_path / "out", keys=(key for key in ["x/a.jpg", "x/a.png"]))
    assert [item["stem"] for item in both["images"]] == ["x__a", "x__a.png"]


def test_nested_folders_with_long_names_stay_within_file_name_limits(tmp_path):
    folder = tmp_path / "images"
    deep = folder / ("d" * 200) / ("e" * 200)
    save(deep / ("f" * 200 + ".png"), 0)
    summary = run([folder], tmp_path / "out")
    (item,) = summary["images"]
    assert len(item["stem"].encode()) == MAX_STEM_BYTES
    assert all(len(name.encode()) <= 255 and (tmp_path / "out" / name).is_file() for name in item["files"])
    assert collect_sources([str(folder)])[0].key == f"{'d' * 200}/{'e' * 200}/{'f' * 200}.png"


def test_stems_that_differ_only_by_case_are_refused(tmp_path):
    """Review 6: Cat.png and cat.png (from two folders, given as files) overwrote each other's outputs
    on a case-insensitive file system (macOS, Windows)."""
    from explain import ExplainError

    for folder, name in (("one", "Cat.png"), ("two", "cat.png")):
        (tmp_path / folder).mkdir()
        Image.fromarray(red_square_scene()).save(tmp_path / folder / name)
    first, second = str(tmp_path / "one" / "Cat.png"), str(tmp_path / "two" / "cat.png")
    with pytest.raises(ExplainError) as refused:
        collect_sources([first, second])
    assert str(refused.value) == (
        f"{first!r} and {second!r} are images 'Cat.png' and 'cat.png' of this run, whose output names differ only "
        "by case: on a case-insensitive file system (macOS, Windows) they would overwrite each other: rename one, "
        "or explain them in separate runs with different --out")
    assert [source.key for source in collect_sources([first])] == ["Cat.png"]


def test_stems_that_differ_only_by_unicode_normalization_are_refused(tmp_path):
    """'é.png' written as one character (NFC, as Linux keyboards type it) and as 'e' + a combining accent
    (NFD, as macOS names files) are two files here and two S3 keys, but one name to macOS's file systems,
    which ignore normalization: their outputs 'shap_é.png.jpeg' would overwrite each other there."""
    from explain import ExplainError

    folder = tmp_path / "images"
    folder.mkdir()
    composed, decomposed = "\u00e9.png", "e\u0301.png"
    for name in (composed, decomposed):
        Image.fromarray(red_square_scene()).save(folder / name)
    if len(list(folder.iterdir())) < 2:
        pytest.skip("this file system ignores Unicode normalization itself")
    with pytest.raises(ExplainError) as refused:
        collect_sources([str(folder)])
    first, second = sorted([str(folder / composed), str(folder / decomposed)])
    assert {ascii(Path(first).name), ascii(Path(second).name)} == {"'\\xe9.png'", "'e\\u0301.png'"}
    assert str(refused.value) == (
        f"{first!r} and {second!r} are images {Path(first).name!r} and {Path(second).name!r} of this run, whose "
        f"output names differ only by Unicode normalization ({ascii(Path(first).name)} and {ascii(Path(second).name)}: "
        "an accented letter as one character, or as a letter and a combining accent): on a file system that "
        "ignores it (macOS) they would overwrite each other: "
        "rename one, or explain them in separate runs with different --out")
    case_and_accent = tmp_path / "both"
    case_and_accent.mkdir()
    for name in ("\u00c9.png", decomposed):
        Image.fromarray(red_square_scene()).save(case_and_accent / name)
    sharp_s = tmp_path / "sharp"  # 'ß' is not 'ss' in another case: file systems fold one letter at a time
    sharp_s.mkdir()
    for name in ("Straße.png", "STRASSE.png", "strasse.png"):
        Image.fromarray(red_square_scene()).save(sharp_s / name)
    with pytest.raises(ExplainError, match="'STRASSE.png' and 'strasse.png' of this run, whose output names differ only "
                                           "by case: "):
        collect_sources([str(sharp_s)])
    (sharp_s / "STRASSE.png").unlink()
    assert [source.key for source in collect_sources([str(sharp_s)])] == ["Straße.png", "strasse.png"]
    with pytest.raises(ExplainError, match="whose output names differ only by case and Unicode normalization: on a file "
                       "system that ignores both \\(macOS\\)"):
        collect_sources([str(case_and_accent)])


def test_symlinked_sub_folders_are_searched_once(tmp_path, caplog):
    """Review 6: a symlinked sub-folder (loop/linked -> set3) added nothing and said nothing."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.fromarray(red_square_scene(seed=1)).save(elsewhere / "far.png")
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(red_square_scene()).save(folder / "near.png")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # back up: searched once, not forever
    with caplog.at_level("WARNING", logger="explain.sources"):
        sources = collect_sources([str(folder)])
    assert [source.key for source in sources] == ["linked/far.png", "near.png"]
    assert f"{folder / 'loop'} is a folder already searched (through a symlink)" in caplog.text


def test_a_folder_that_cannot_be_listed_is_named_and_a_broken_link_is_kept_to_fail(tmp_path, monkeypatch):
    """Review 40, D1: a sub-folder without read permission was skipped without a word (its images explained
    nowhere, exit 0), an unreadable top folder read as "no .jpg/.jpeg/.png files", a dangling cat.png link was
    dropped. Permissions are simulated (root may list any folder): os.walk's listing fails as it would."""
    import os

    folder = tmp_path / "images"
    (folder / "locked").mkdir(parents=True)
    Image.fromarray(red_square_scene()).save(folder / "near.png")
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    assert [source.key for source in collect_sources(folder)] == ["gone.png", "near.png"]  # gone.png fails its read
    listing = os.scandir

    def scandir(path="."):
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ExplainError, match=f"^cannot list folder '{folder / 'locked'}': Permission denied; make it "
                                           "readable, or name the images or folders to explain$"):
        collect_sources(folder)
    with pytest.raises(ExplainError, match=f"^cannot list folder '{folder / 'locked'}': Permission denied"):
        collect_sources(folder / "locked")


def test_one_location_given_alone_is_one_location_not_its_characters(tmp_path, monkeypatch):
    # review 19: collect_sources("photos") searched "p", "h", ...; an absolute path began with the
    # whole file system ("/") before failing on its second character
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    Image.fromarray(red_square_scene()).save(tmp_path / "photos" / "scene.png")
    for location in ("photos", tmp_path / "photos"):
        assert [source.key for source in collect_sources(location)] == ["scene.png"]
