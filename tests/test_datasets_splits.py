"""Splits: scene-disjoint parts, determinism, leave-one-out, cross-dataset, save/load by image key."""

import json
from pathlib import Path

import pandas as pd
import pytest

from synthiqa.datasets import (
    IQADataset,
    IQARecord,
    ScoreInfo,
    Split,
    apply_split,
    cross_dataset,
    image_keys,
    leave_one_reference_out,
    leave_one_type_out,
    load_dataset,
    load_splits,
    reference_disjoint_splits,
    save_splits,
    stored_split,
)
from synthiqa.errors import DatasetError

TYPES = ("gaussian_blur", "jpeg", "white_noise")
GROUPS = {"gaussian_blur": "blur", "jpeg": "jpeg", "white_noise": "noise"}


def make_dataset(name="toy", n_scenes=10, types=TYPES, root=Path("/data/toy"), reverse=False):
    """In-memory dataset: every scene x type at two levels (no files needed by the split functions)."""
    records = []
    for s in range(n_scenes):
        for t in types:
            for level in (1, 4):
                records.append(IQARecord(
                    image=root / "images" / f"s{s:02d}_{t}_{level}.png", score=float(level),
                    score_norm=level / 5, reference=root / "refs" / f"s{s:02d}.png", scene=f"s{s:02d}",
                    dist_type=t, dist_group=GROUPS[t], level=float(level), extra={"split": "train"},
                ))
    if reverse:
        records.reverse()
    return IQADataset(name, root, ScoreInfo("mos", 0, 5), records)


def _scene(key):
    return key.split("/")[1].split("_")[0]


def test_reference_disjoint_every_scene_in_exactly_one_part():
    ds = make_dataset(n_scenes=20)
    splits = reference_disjoint_splits(ds, n_splits=4, seed=3)
    assert [s.name for s in splits] == ["split_00", "split_01", "split_02", "split_03"]
    keys = set(image_keys(ds))
    for split in splits:
        parts = [set(split.train), set(split.val), set(split.test)]
        assert set.union(*parts) == keys and sum(map(len, parts)) == len(keys)
        scenes = [{_scene(k) for k in p} for p in parts]
        assert not (scenes[0] & scenes[1] or scenes[0] & scenes[2] or scenes[1] & scenes[2])
        assert [len(s) for s in scenes] == [14, 2, 4]
        assert split.train == sorted(split.train) and split.dataset == "toy"
    assert len({tuple(s.test) for s in splits}) > 1  # the splits differ from each other


def test_reference_disjoint_kadid_sized_counts_match_arniqa():
    splits = reference_disjoint_splits(make_dataset(n_scenes=81, types=("jpeg",)), n_splits=1)
    counts = [len({_scene(k) for k in part}) for part in (splits[0].train, splits[0].val, splits[0].test)]
    assert counts == [57, 8, 16]


def test_reference_disjoint_is_seeded_and_independent_of_record_order():
    a = reference_disjoint_splits(make_dataset(), n_splits=3, seed=5)
    b = reference_disjoint_splits(make_dataset(reverse=True), n_splits=3, seed=5)
    c = reference_disjoint_splits(make_dataset(), n_splits=3, seed=6)
    assert a == b
    assert [s.test for s in a] != [s.test for s in c]


def test_reference_disjoint_rejects_bad_ratios_and_tiny_sets():
    with pytest.raises(DatasetError, match="summing to 1"):
        reference_disjoint_splits(make_dataset(), ratios=(0.5, 0.1, 0.1))
    with pytest.raises(DatasetError, match="2 scenes, too few for 3"):
        reference_disjoint_splits(make_dataset(n_scenes=2))
    small = reference_disjoint_splits(make_dataset(n_scenes=3), n_splits=1)[0]
    assert all(small.part(p) for p in ("train", "val", "test"))  # a non-zero ratio gets at least a scene


def test_leave_one_type_out_and_group_out():
    ds = make_dataset(n_scenes=3)
    splits = leave_one_type_out(ds)
    assert [s.name for s in splits] == [f"leave_out_type={t}" for t in sorted(TYPES)]
    for split, held in zip(splits, sorted(TYPES), strict=True):
        assert split.test and all(held in k for k in split.test)
        assert not any(held in k for k in split.train)
        assert len(split.train) + len(split.test) == len(ds) and split.val == []
    groups = leave_one_type_out(ds, by="dist_group")
    assert [s.name for s in groups] == [f"leave_out_group={g}" for g in ("blur", "jpeg", "noise")]
    ds.records[0] = IQARecord(image=ds.records[0].image, score=1.0, score_norm=0.2)
    with pytest.raises(DatasetError, match="1 images of dataset 'toy' have no dist_type"):
        leave_one_type_out(ds)


def test_leave_one_reference_out_holds_out_each_scene():
    ds = make_dataset(n_scenes=4)
    splits = leave_one_reference_out(ds)
    assert [s.name for s in splits] == [f"leave_out_scene=s{i:02d}" for i in range(4)]
    for i, split in enumerate(splits):
        assert {_scene(k) for k in split.test} == {f"s{i:02d}"} and len(split.test) == 6
        assert f"s{i:02d}" not in {_scene(k) for k in split.train}


def test_cross_dataset_trains_on_one_tests_on_the_other():
    train_ds = make_dataset("kadid", n_scenes=10)
    test_ds = make_dataset("live", n_scenes=3, types=("jpeg",), root=Path("/data/live"))
    split = cross_dataset(train_ds, test_ds, val_ratio=0.2, seed=1)
    assert split.name == "kadid->live" and split.test_dataset == "live"
    assert {_scene(k) for k in split.train}.isdisjoint({_scene(k) for k in split.val})
    assert len({_scene(k) for k in split.val}) == 2 and split.test == sorted(image_keys(test_ds))
    with pytest.raises(DatasetError, match="tests on dataset 'live': pass it as test_dataset"):
        apply_split(train_ds, split)
    train, val, test = apply_split(train_ds, split, test_dataset=test_ds)
    assert len(train) + len(val) == len(train_ds) and len(test) == len(test_ds)
    assert all(r.image.is_relative_to("/data/live") for r in test)


def test_apply_split_returns_records_in_key_order_and_checks_keys():
    ds = make_dataset(n_scenes=5)
    split = reference_disjoint_splits(ds, n_splits=1)[0]
    train, val, test = apply_split(ds, split)
    assert [str(r.image.relative_to(ds.root)) for r in test] == split.test
    bad = Split("bad", split.train + ["images/ghost.png"], split.val, split.test)
    with pytest.raises(DatasetError, match="1 of .* train images are not in it, first: images/ghost.png"):
        apply_split(ds, bad)
    overlap = Split("overlap", split.train, split.val, split.test + split.train[:2])
    with pytest.raises(DatasetError, match="2 images in both train and test"):
        apply_split(ds, overlap)


def test_stored_split_reads_the_split_column():
    ds = make_dataset(n_scenes=2)
    split = stored_split(ds)
    assert len(split.train) == len(ds) and split.test == []
    with pytest.raises(DatasetError, match="no 'fold' values"):
        stored_split(ds, column="fold")


def _kadid_tree(root):
    rows = []
    for r in range(1, 6):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / f"I{r:02d}.png").write_bytes(b"x")
        for t in (1, 10):
            for lv in range(1, 6):
                name = f"I{r:02d}_{t:02d}_{lv:02d}.png"
                (root / "images" / name).write_bytes(b"x")
                rows.append((name, f"I{r:02d}.png", 3.0, 0.1))
    pd.DataFrame(rows, columns=["dist_img", "ref_img", "dmos", "var"]).to_csv(root / "dmos.csv", index=False)


def test_save_load_round_trip_is_keyed_by_file_names(tmp_path):
    root = tmp_path / "kadid"
    _kadid_tree(root)
    ds = load_dataset("kadid10k", root)
    splits = reference_disjoint_splits(ds, n_splits=3, seed=2)
    path = tmp_path / "out" / "kadid_splits.json"
    save_splits(path, splits, ds.name)
    assert [p.name for p in path.parent.iterdir()] == ["kadid_splits.json"]  # no temporary left behind
    payload = json.loads(path.read_text())
    assert payload["dataset"] == "kadid10k" and "images/I01_01_01.png" in {
        k for s in payload["splits"] for p in ("train", "val", "test") for k in s[p]}
    def images_per_part(dataset, split_list):
        return [[sorted(str(r.image) for r in part) for part in apply_split(dataset, s)] for s in split_list]

    before = images_per_part(ds, splits)
    # reorder the label file's rows: the loaded splits name the same images
    table = pd.read_csv(root / "dmos.csv").sample(frac=1.0, random_state=0)
    table.to_csv(root / "dmos.csv", index=False)
    shuffled = load_dataset("kadid10k", root)
    assert [r.image for r in shuffled.records] != [r.image for r in ds.records]
    loaded = load_splits(path, dataset=shuffled)
    assert loaded == splits
    assert images_per_part(shuffled, loaded) == before
    assert reference_disjoint_splits(shuffled, n_splits=3, seed=2) == splits


def test_load_splits_reports_mismatch_and_bad_files(tmp_path):
    root = tmp_path / "kadid"
    _kadid_tree(root)
    ds = load_dataset("kadid10k", root)
    path = tmp_path / "s.json"
    save_splits(path, reference_disjoint_splits(ds, n_splits=1), ds.name)
    table = pd.read_csv(root / "dmos.csv")
    table[~table["dist_img"].str.startswith("I03")].to_csv(root / "dmos.csv", index=False)
    smaller = load_dataset("kadid10k", root)
    with pytest.raises(DatasetError, match="does not match dataset 'kadid10k': 10 of .* images are not in"):
        load_splits(path, dataset=smaller)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(DatasetError, match="not a synthiqa-splits file"):
        load_splits(tmp_path / "bad.json")
    with pytest.raises(DatasetError, match="split file not found"):
        load_splits(tmp_path / "none.json")


# --- one split implementation, one seeding scheme, one protocol vocabulary ------------------------------

def test_split_order_is_the_one_seeding_scheme():
    import numpy as np

    from synthiqa.datasets.splits import held_out_parts, split_order

    assert split_order(10, 5, 3, 1) == np.random.default_rng([5, 3, 1]).permutation(10).tolist()
    parts = held_out_parts(10, 5, 27)
    order = split_order(10, 5, 27)
    assert parts == {"test": order[:2], "val": order[2:3], "train": order[3:]}


def test_every_split_is_cut_from_split_order():
    import torch

    from synthiqa.datasets.folds import experiment_splits
    from synthiqa.datasets.splits import held_out_parts, scene_disjoint_folds, split_order
    from synthiqa.models.training.onthefly import split_references

    ds = make_dataset()
    names = sorted({r.scene for r in ds.records})
    for i, split in enumerate(reference_disjoint_splits(ds, n_splits=3, seed=5)):
        order = [names[j] for j in split_order(len(names), 5, i)]
        assert {_scene(k) for k in split.train} == set(order[:7])
        assert {_scene(k) for k in split.test} == set(order[8:])
    cross = cross_dataset(ds, make_dataset("other", root=Path("/data/other")), seed=5)
    assert {_scene(k) for k in cross.val} == {names[split_order(len(names), 5, 0)[-1]]}
    keys = sorted(image_keys(ds))
    for i, split in enumerate(experiment_splits("random", ds, seed=5, n_splits=2)):
        want = held_out_parts(len(keys), 5, i, 1)
        assert split.test == sorted(keys[j] for j in want["test"])
        assert split.val == sorted(keys[j] for j in want["val"])
    for f, fold in enumerate(experiment_splits("loro", ds, seed=5)[:3]):
        train_scenes = sorted({_scene(k) for k in fold.train + fold.val})
        assert {_scene(k) for k in fold.val} == {train_scenes[split_order(len(train_scenes), 5, f)[0]]}
    scenes = [r.scene for r in ds.records]
    for i, (_, val) in enumerate(scene_disjoint_folds(scenes, n_splits=3, val_ratio=0.2, seed=5)):
        assert {scenes[j] for j in val} == {names[j] for j in split_order(len(names), 5, i)[:2]}
    refs = [torch.full((3, 40, 40), i, dtype=torch.uint8) for i in range(8)]
    assert split_references(refs, 32, seed=5).parts == held_out_parts(8, 5, 27)


def test_generation_split_column_is_reference_disjoint_and_seeded():
    from synthiqa.datasets.splits import generation_splits

    scenes = [f"s{i:02d}" for i in range(10)] * 3
    split = generation_splits(scenes, seed=3)
    assert sorted(split) == sorted(set(scenes))
    assert sorted(split.values()).count("train") == 7 and list(split.values()).count("test") == 2
    assert split == generation_splits(list(reversed(scenes)), seed=3)
    assert any(generation_splits(scenes, seed=s) != split for s in range(4, 8))


def test_older_experiment_names_are_aliases_of_the_protocols():
    from synthiqa.benchmarks.protocols import ProtocolSpec
    from synthiqa.datasets.folds import experiment_splits
    from synthiqa.datasets.splits import PROTOCOL_ALIASES, PROTOCOLS, canonical_protocol
    from synthiqa.errors import ConfigError
    from synthiqa.models.arniqa.method import ARNIQAConfig
    from synthiqa.models.trcnn.method import TRCNNConfig

    assert PROTOCOL_ALIASES == {"reference-split": "intra", "random-split": "random",
                                "leave-one-out": "loro", "cross-set": "cross"}
    assert set(PROTOCOL_ALIASES.values()) <= set(PROTOCOLS) and canonical_protocol("loto") == "loto"
    ds = make_dataset()
    for old, new in PROTOCOL_ALIASES.items():
        if new != "cross":
            assert ([s.to_dict() for s in experiment_splits(old, ds, seed=4)]
                    == [s.to_dict() for s in experiment_splits(new, ds, seed=4)])
        assert TRCNNConfig.from_dict({"experiment": old}).experiment == new
        assert ARNIQAConfig.from_dict({"experiment": old}).experiment == new
    assert ProtocolSpec("leave-one-out").name == "loro" and ProtocolSpec("reference-split").name == "intra"
    with pytest.raises(ConfigError, match="unknown experiment 'nope'.*leave-one-out = loro"):
        experiment_splits("nope", ds)
