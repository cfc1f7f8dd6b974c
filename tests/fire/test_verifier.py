"""The learned fire verifier: the committed model matches its card and this code's patches, scores are
deterministic, the photo split is fixed by content, and training runs end to end on generated photos
(so CI needs none of the real data; it needs the fire-train extra, torch and the pretrained weights)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from analytics.fire.verifier import CARD_FILE, MODEL_DIR, MODEL_FILE, Verifier, VerifierError
from analytics.fire.verifier_features import PATCH_SIDE, PATCH_VERSION, candidate_boxes, patch
from ganzhi.cli import main
from ganzhi.train_fire_verifier import is_held_out, read_photos, split
from ganzhi.verifier_crops import shrunk


def _flame(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """Dark ground with a ragged flame: white core, yellow, orange, red edge, noise."""
    image = np.full((size, size, 3), (40, 45, 50), np.uint8)
    cx, cy = rng.integers(30, size - 30), rng.integers(40, size - 20)
    yy, xx = np.mgrid[:size, :size]
    angle = np.arctan2(yy - cy, xx - cx)
    reach = 18 + 6 * np.sin(5 * angle + rng.uniform(0, 6)) + rng.normal(0, 2, (size, size))
    r = np.hypot((xx - cx) * 1.4, (yy - cy)) / reach
    for limit, bgr in ((1.0, (20, 40, 210)), (0.75, (30, 140, 255)), (0.5, (70, 220, 255)), (0.25, (235, 255, 255))):
        image[r < limit] = bgr
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def _look_alike(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """A smooth orange sunset over dark fields, or a flat red car, or a round warm lamp."""
    kind = rng.integers(3)
    image = np.full((size, size, 3), (60, 70, 60), np.uint8)
    if kind == 0:
        for row in range(size // 2):
            t = row / (size / 2)
            image[row] = (60 + 40 * (1 - t), 120 + 60 * t, 230)
    elif kind == 1:
        x, y = rng.integers(10, 40, 2)
        image[y:y + 30, x:x + 45] = (40, 40, 215)
    else:
        cv2.circle(image, (int(rng.integers(30, 66)), int(rng.integers(30, 66))), 14, (90, 200, 250), -1)
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(5)
    for folder, make in (("fire_images", _flame), ("normal_images", _look_alike)):
        (root / folder).mkdir()
        for i in range(24):
            cv2.imwrite(str(root / folder / f"{i}.png"), make(rng))
    return root


def test_the_committed_model_matches_its_card_and_these_features():
    card = json.loads((MODEL_DIR / CARD_FILE).read_text())
    raw = (MODEL_DIR / MODEL_FILE).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == card["sha256"]
    assert card["patch_version"] == PATCH_VERSION and card["patch_side"] == PATCH_SIDE
    assert len(raw) < 8_000_000
    assert "Apache-2.0" in card["model"]
    assert card["data"]["licence"].startswith("MIT") and len(card["data"]["commit"]) == 40
    assert 0 < card["threshold"] < 1


def test_a_model_altered_or_made_for_other_features_is_refused(tmp_path):
    shutil.copy(MODEL_DIR / MODEL_FILE, tmp_path / MODEL_FILE)
    card = json.loads((MODEL_DIR / CARD_FILE).read_text())
    (tmp_path / CARD_FILE).write_text(json.dumps(card | {"patch_version": "p0"}))
    with pytest.raises(VerifierError, match="patches p0"):
        Verifier.load(tmp_path)
    (tmp_path / CARD_FILE).write_text(json.dumps(card | {"patch_side": 64}))
    with pytest.raises(VerifierError, match="×64"):
        Verifier.load(tmp_path)
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    Verifier.load(tmp_path)
    raw = bytearray((tmp_path / MODEL_FILE).read_bytes())
    raw[-10] ^= 0xFF
    (tmp_path / MODEL_FILE).write_bytes(bytes(raw))
    with pytest.raises(VerifierError, match="SHA-256"):
        Verifier.load(tmp_path)
    (tmp_path / CARD_FILE).write_text("{not json")
    with pytest.raises(VerifierError, match="card unreadable"):
        Verifier.load(tmp_path)


def test_scores_are_deterministic_probabilities_one_per_box():
    rng = np.random.default_rng(1)
    frame = np.concatenate([_flame(rng), _look_alike(rng)], axis=1)
    boxes = candidate_boxes(frame)
    assert boxes
    first = Verifier.load().score(frame, boxes)
    again = Verifier.load().score(frame.copy(), list(boxes))
    assert first == again
    assert len(first) == len(boxes) and all(0.0 <= s <= 1.0 for s in first)
    assert Verifier.load().score(frame, []) == []


def test_a_patch_is_the_box_grown_by_half_its_longer_side_squared_and_resampled():
    frame = np.zeros((400, 600, 3), np.uint8)
    frame[150:250, 250:350] = (0, 0, 255)  # a 100 px red square: the patch is 200 px around it
    cut = patch(frame, (250, 150, 100, 100))
    assert cut.shape == (PATCH_SIDE, PATCH_SIDE, 3) and cut.dtype == np.uint8
    quarter = PATCH_SIDE // 4
    assert (cut[quarter + 2:-quarter - 2, quarter + 2:-quarter - 2] == (0, 0, 255)).all()
    assert (cut[:quarter - 2] == 0).all() and (cut[:, -quarter + 2:] == 0).all()
    tall = patch(frame, (290, 100, 20, 200))  # the longer side sets the square
    assert (tall[:, :quarter] == 0).all() and (tall[PATCH_SIDE // 2, PATCH_SIDE // 2] == (0, 0, 255)).all()


def test_a_box_at_the_frame_edge_or_tiny_still_gets_a_full_patch():
    frame = np.full((120, 160, 3), 90, np.uint8)
    frame[:, :80] = 30
    for box in ((0, 0, 160, 120), (150, 110, 10, 10), (0, 0, 1, 1), (159, 119, 1, 1)):
        cut = patch(frame, box)
        assert cut.shape == (PATCH_SIDE, PATCH_SIDE, 3)
    edge = patch(frame, (150, 110, 10, 10))  # the frame's edge is repeated, not padded with black
    assert (edge == 90).all()


def test_the_split_is_fixed_by_content_and_disjoint(photos, tmp_path):
    first = read_photos(photos, ("fire_images",), ("normal_images",))
    training, held = split(first)
    assert {p.sha256 for p in training}.isdisjoint({p.sha256 for p in held})
    assert len(training) + len(held) == len(first) == 48
    assert held and training
    again = split(read_photos(photos, ("fire_images",), ("normal_images",)))
    assert [p.sha256 for p in again[1]] == [p.sha256 for p in held]
    renamed = tmp_path / "renamed"
    shutil.copytree(photos, renamed)
    for path in (renamed / "fire_images").iterdir():
        path.rename(path.with_name("x" + path.name))
    assert {p.sha256 for p in split(read_photos(renamed, ("fire_images",), ("normal_images",)))[1]} == {
        p.sha256 for p in held}
    assert is_held_out("00000000" + "0" * 56) and not is_held_out("ffffffff" + "0" * 56)


def test_a_photo_in_both_classes_is_dropped_and_unreadable_files_are_named(photos, tmp_path):
    root = tmp_path / "mixed"
    shutil.copytree(photos, root)
    shutil.copy(root / "fire_images" / "0.png", root / "normal_images" / "same.png")
    (root / "normal_images" / "broken.jpg").write_bytes(b"not a picture")
    found = read_photos(root, ("fire_images",), ("normal_images",))
    assert len(found) == 48  # 47 distinct good photos (one lost to the conflict) and the broken file
    from ganzhi.train_fire_verifier import crop_table

    assert crop_table([p for p in found if p.path.name == "broken.jpg"]).skipped == ["broken.jpg"]


def test_training_runs_end_to_end_and_the_benchmark_reads_its_model(photos, tmp_path):
    pytest.importorskip("torch", reason="training needs the fire-train extra")
    out = tmp_path / "model"
    result = CliRunner().invoke(main, ["train-fire-verifier", str(photos), "--out", str(out), "--source", "generated",
                                       "--licence", "CC0-1.0", "--commit", "none", "--shrink", "1",
                                       "--no-simulator"])
    assert result.exit_code == 0, result.output
    assert "held out (not read)" in result.output
    card = json.loads((out / CARD_FILE).read_text())
    assert card["data"]["source"] == "generated" and card["data"]["licence"] == "CC0-1.0"
    assert card["data"]["held_out_photos"] + card["data"]["training_photos"] == 48
    assert card["data"]["tower_range_copies"] > 0 and card["data"]["simulator_crops"] == 0
    verifier = Verifier.load(out)
    rng = np.random.default_rng(99)
    fire, other = _flame(rng), _look_alike(rng)
    fire_score = max(verifier.score(fire, candidate_boxes(fire)))
    other_scores = verifier.score(other, candidate_boxes(other)) or [0.0]
    assert fire_score > max(other_scores)
    bench = CliRunner().invoke(main, ["bench", "fire-photos", str(photos), "--model", str(out)])
    assert bench.exit_code == 0, bench.output
    assert "held-out, stage + verifier" in bench.output and "training (card), out_of_fold" in bench.output


def test_a_crop_shrunk_to_tower_range_is_described_like_any_other():
    rng = np.random.default_rng(3)
    image = cv2.resize(_flame(rng), (480, 480), interpolation=cv2.INTER_LINEAR)
    box = candidate_boxes(image)[0]
    cuts = [shrunk(image, box, rng) for _ in range(5)]
    assert all(c is not None and c.shape == (PATCH_SIDE, PATCH_SIDE, 3) for c in cuts)
    assert not np.array_equal(cuts[0], patch(image, box))  # coarser: seen from afar, JPEG-encoded
    assert shrunk(image, (10, 10, 6, 6), rng) is None  # already smaller than tower range


def test_fine_tuning_changes_the_exported_network_and_says_so_on_the_card(photos, tmp_path):
    pytest.importorskip("torch", reason="training needs the fire-train extra")
    out = tmp_path / "tuned"
    result = CliRunner().invoke(main, ["train-fire-verifier", str(photos), "--out", str(out), "--source", "generated",
                                       "--licence", "CC0-1.0", "--commit", "none", "--shrink", "0",
                                       "--no-simulator", "--fine-tune", "1"])
    assert result.exit_code == 0, result.output
    assert "last 1 MBConv block(s) and the head convolution fine-tuned" in json.loads(
        (out / CARD_FILE).read_text())["model"]
    from ganzhi.verifier_backbone import OnnxNet

    rng = np.random.default_rng(8)
    patches = np.stack([patch(_flame(rng), (30, 30, 40, 40)) for _ in range(3)])
    assert not np.allclose(OnnxNet(out / MODEL_FILE).embed(patches), OnnxNet().embed(patches), atol=1e-3)
    verifier = Verifier.load(out)
    fire, other = _flame(rng), _look_alike(rng)
    assert max(verifier.score(fire, candidate_boxes(fire))) > max(verifier.score(other, candidate_boxes(other)) or [0])


def test_fine_tuning_cannot_take_the_network_from_an_onnx_file(photos, tmp_path):
    result = CliRunner().invoke(main, ["train-fire-verifier", str(photos), "--out", str(tmp_path), "--fine-tune", "1",
                                       "--backbone", str(MODEL_DIR / MODEL_FILE)])
    assert result.exit_code != 0 and "--backbone" in result.output and not list(tmp_path.iterdir())


def test_an_augmented_copy_keeps_the_patch_size_and_its_hue():
    pytest.importorskip("torch", reason="augmentation lives with the fine-tuning (fire-train extra)")
    from ganzhi.verifier_finetune import augmented

    rng = np.random.default_rng(4)
    orange = np.full((PATCH_SIDE, PATCH_SIDE, 3), (40, 140, 230), np.uint8)
    hues = set()
    for _ in range(20):
        copy = augmented(orange, rng)
        assert copy.shape == orange.shape and copy.dtype == np.uint8
        hues.add(int(np.median(cv2.cvtColor(copy, cv2.COLOR_BGR2HSV)[..., 0])))
    assert max(hues) - min(hues) <= 2  # exposure and JPEG change brightness, not the colour


def test_training_refuses_a_folder_that_is_not_there(photos):
    result = CliRunner().invoke(main, ["train-fire-verifier", str(photos), "--fire-dir", "nope"])
    assert result.exit_code != 0 and "nope is not a directory" in result.output


def test_training_without_the_training_extra_says_which_extra_to_install(photos, tmp_path):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("the fire-train extra is installed here")
    result = CliRunner().invoke(main, ["train-fire-verifier", str(photos), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "fire-train" in result.output and not list(tmp_path.iterdir())


def test_outer_cross_validation_scores_every_photo_with_a_model_that_did_not_see_it(photos):
    pytest.importorskip("torch", reason="training needs the fire-train extra")
    result = CliRunner().invoke(main, ["bench", "fire-photos", str(photos), "--cross-validate", "3"])
    assert result.exit_code == 0, result.output
    folds = [line for line in result.output.splitlines() if line.startswith("outer fold")]
    assert len(folds) == 3 and sum(int(line.split("threshold")[1].split()[1]) for line in folds) == 48
    assert "all photos, 3 outer folds: 48 photos (24 fire)" in result.output


def test_training_on_the_committed_models_backbone_needs_no_torch_and_keeps_the_backbone(photos, tmp_path):
    pytest.importorskip("onnx", reason="training needs the fire-train extra")
    pytest.importorskip("sklearn", reason="training needs the fire-train extra")
    out = tmp_path / "model"
    result = CliRunner().invoke(main, ["train-fire-verifier", str(photos), "--out", str(out), "--source", "generated",
                                       "--licence", "CC0-1.0", "--commit", "none", "--shrink", "0", "--no-simulator",
                                       "--backbone", str(MODEL_DIR / MODEL_FILE)])
    assert result.exit_code == 0, result.output
    assert "earlier verifier.onnx" in json.loads((out / CARD_FILE).read_text())["model"]
    from ganzhi.verifier_backbone import OnnxNet

    rng = np.random.default_rng(8)
    patches = np.stack([patch(_flame(rng), (30, 30, 40, 40)) for _ in range(3)])
    assert np.array_equal(OnnxNet(out / MODEL_FILE).embed(patches), OnnxNet().embed(patches))  # backbone kept
    verifier = Verifier.load(out)
    fire, other = _flame(rng), _look_alike(rng)
    assert max(verifier.score(fire, candidate_boxes(fire))) > max(verifier.score(other, candidate_boxes(other)) or [0])


def test_the_photo_benchmark_says_where_fire_photos_are_lost_and_draws_them(photos, tmp_path):
    blank = photos / "fire_images" / "blank.png"  # a "fire" photo on which the colour stage finds nothing
    cv2.imwrite(str(blank), np.full((64, 64, 3), (90, 90, 90), np.uint8))
    blank_split = "held-out" if is_held_out(hashlib.sha256(blank.read_bytes()).hexdigest()) else "training"
    try:
        result = CliRunner().invoke(main, ["bench", "fire-photos", str(photos), "--train",
                                           "--save-misses", str(tmp_path)])
    finally:
        blank.unlink()
    assert result.exit_code == 0, result.output
    lost = {}
    for line in result.output.splitlines():
        found = re.match(r"(\S+), where lost: (\d+) fire .* \(colour stage\), (\d+) with .* \(verifier\); "
                         r"(\d+) non-fire", line)
        if found:
            lost[found[1]] = tuple(int(found[k]) for k in (2, 3, 4))
    assert set(lost) == {"held-out", "training"}
    assert lost[blank_split][0] == 1 and lost["held-out" if blank_split == "training" else "training"][0] == 0
    for name, (no_candidate, under, flagged) in lost.items():
        assert len(list((tmp_path / name).glob("miss-*.png"))) == no_candidate + under
        assert len(list((tmp_path / name).glob("flag-*.png"))) == flagged
    assert (tmp_path / blank_split / "miss--1.000-blank.png").is_file()


def _yolo_set(root, rng: np.random.Generator) -> dict[str, str]:
    """A YOLO-labelled folder as D-Fire lays it out (class 0 smoke, 1 fire): images/ and labels/, one text file
    per picture. Returns what each picture should become."""
    expected = {}
    for sub in ("images/a", "labels/a"):
        (root / sub).mkdir(parents=True)

    def put(name: str, image: np.ndarray, label: str | None, outcome: str) -> None:
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        if label is not None:
            (root / "labels" / f"{name}.txt").write_text(label)
        expected[name] = outcome

    for i in range(6):
        put(f"a/fire{i}", _flame(rng), "0 0.5 0.5 0.2 0.2\n1 0.4 0.6 0.3 0.3\n", "fire")
        put(f"none{i}", _look_alike(rng), "" if i % 2 else "\n", "non-fire")
    put("smoke", _look_alike(rng), "0 0.5 0.4 0.3 0.2\n", "skipped: only classes 0")
    put("unlabelled", _look_alike(rng), None, "skipped: no label file")
    put("garbled", _flame(rng), "1 0.5 0.5 wide 0.2\n", "skipped: label line 1 is not")
    put("negative", _flame(rng), "-1 0.5 0.5 0.2 0.2\n", "skipped: label line 1 is not")
    put("short", _flame(rng), "1 0.5 0.5\n", "skipped: label line 1 is not")
    put("nan", _flame(rng), "1 nan 0.5 0.2 0.2\n", "skipped: label line 1 is not")
    put("superscript", _flame(rng), "\u00b9 0.5 0.5 0.2 0.2\n", "skipped: label line 1 is not")  # "¹".isdigit()
    put("huge", _flame(rng), "1" * 5000 + " 0.5 0.5 0.2 0.2\n", "skipped: label line 1 is not")  # int() refuses
    (root / "labels" / "binary.txt").write_bytes(b"\xff\xfe\x00")
    put("binary", _look_alike(rng), None, "skipped: label file is not text")
    return expected


def test_a_yolo_labelled_set_is_read_by_class_and_bad_labels_are_named(tmp_path):
    from ganzhi.train_fire_verifier import read_yolo_photos

    expected = _yolo_set(tmp_path, np.random.default_rng(11))
    photos, skipped = read_yolo_photos(tmp_path, "images", "labels", fire_classes=(1,))
    got = {str(p.path.relative_to(tmp_path / "images").with_suffix("")): "fire" if p.fire else "non-fire"
           for p in photos}
    assert got == {name: kind for name, kind in expected.items() if not kind.startswith("skipped")}
    reasons = {name: reason for name, reason in skipped}
    for name, kind in expected.items():
        if kind.startswith("skipped"):
            assert reasons[f"{name}.png"].startswith(kind.removeprefix("skipped: ")), (name, reasons)
    smoke_as_fire, _ = read_yolo_photos(tmp_path, "images", "labels", fire_classes=(0, 1))
    assert "smoke.png" in {p.path.name for p in smoke_as_fire if p.fire}


def test_a_fresh_set_is_scored_whole_with_the_committed_model(tmp_path):
    expected = _yolo_set(tmp_path / "set", np.random.default_rng(12))
    result = CliRunner().invoke(main, ["bench", "fire-photos", str(tmp_path / "set"), "--yolo-labels", "labels",
                                       "--fresh", "--save-misses", str(tmp_path / "drawn")])
    assert result.exit_code == 0, result.output
    usable = sum(not kind.startswith("skipped") for kind in expected.values())
    fire = sum(kind == "fire" for kind in expected.values())
    assert f"fresh, stage + verifier:          {usable} photos ({fire} fire)" in result.output
    assert "held-out" not in result.output and "training (card)" not in result.output
    assert "skipped 9 pictures" in result.output and "no label file: unlabelled.png" in result.output
    lost = re.search(r"fresh, where lost: (\d+) fire .* \(colour stage\), (\d+) with .* \(verifier\); (\d+) non-fire",
                     result.output)
    assert lost, result.output
    assert len(list((tmp_path / "drawn" / "fresh").glob("*.png"))) == sum(int(n) for n in lost.groups())


def test_a_yolo_folder_that_is_not_there_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    result = CliRunner().invoke(main, ["bench", "fire-photos", str(tmp_path), "--yolo-labels", "nope", "--fresh"])
    assert result.exit_code != 0 and "nope is not a directory" in result.output


def test_the_training_split_alone_can_be_scored_without_reading_the_held_out_one(photos, tmp_path):
    result = CliRunner().invoke(main, ["bench", "fire-photos", str(photos), "--training-only",
                                       "--save-misses", str(tmp_path)])
    assert result.exit_code == 0, result.output
    training = sum(not p.held_out for p in read_photos(photos, ("fire_images",), ("normal_images",)))
    assert f"training, stage + verifier:          {training} photos" in result.output
    assert "in sample" in result.output
    assert "held-out" not in result.output and not (tmp_path / "held-out").exists()


def test_flags_that_would_be_ignored_are_refused(tmp_path):
    for flags in (["--cross-validate", "3", "--yolo-labels", "labels"], ["--fresh", "--training-only"],
                  ["--fresh", "--train"]):
        result = CliRunner().invoke(main, ["bench", "fire-photos", str(tmp_path), *flags])
        assert result.exit_code == 2 and "not with" in result.output, (flags, result.output)
