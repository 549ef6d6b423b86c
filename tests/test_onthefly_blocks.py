"""RandomDegradation and DegradedReferences: seeding equalities across batches, workers, epochs and ranks."""

import hashlib

import numpy as np
import pytest
import torch

from synthiqa.datasets.degraded import DegradedReferences, DegradedReferencesMap
from synthiqa.distortions import RandomDegradation
from synthiqa.distortions.module import compile_support
from synthiqa.errors import DatasetError, DistortionInputError


def _refs(n=5, h=72, w=88, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, h + 8 * i, w), generator=g, dtype=torch.uint8) for i in range(n)]


def _digests(batches):
    out = []
    for b in batches:
        h = hashlib.blake2b(digest_size=12)
        for key in ("image", "score", "type", "group", "level", "scene", "item", "view", "version"):
            if key in b:
                h.update(key.encode() + np.ascontiguousarray(b[key].cpu().numpy()).tobytes())
        out.append(h.hexdigest())
    return out


# ------------------------------------------------------------------------------------- RandomDegradation
def test_same_seed_same_output_whatever_the_batch(one_thread):
    deg = RandomDegradation("arniqa", max_chain=3)
    x = torch.rand(6, 3, 48, 48)
    seeds = [11, 12, 13, 14, 15, 16]
    full, params = deg(x, seeds)
    part, part_params = deg(x[2:5].clone(), seeds[2:5])
    assert torch.equal(full[2:5], part)
    assert [p["chain"] for p in params[2:5]] == [p["chain"] for p in part_params]
    mates, _ = deg(torch.cat([torch.rand(2, 3, 48, 48), x[3:4]]), [99, 98, 14])
    assert torch.equal(mates[2], full[3])


def test_share_applies_one_chain_and_parameters_to_a_group(one_thread):
    deg = RandomDegradation("arniqa", max_chain=4, pristine_prob=0.0)
    x = torch.rand(8, 3, 40, 40)
    out, params = deg(x, [1, 2], share=4)
    assert len({p["chain"] for p in params[:4]}) == 1 and len({p["chain"] for p in params[4:]}) == 1
    strip = [[{k: v for k, v in s.items()} for s in p["steps"]] for p in params]
    assert strip[0] == strip[1] == strip[2] == strip[3]
    same = torch.cat([x[:4]])
    again, _ = deg(same, [1], share=4)  # a group's images depend on the group's seed only
    assert torch.equal(again, out[:4])


def test_replay_reapplies_recorded_parameters(one_thread):
    deg = RandomDegradation("kadid", max_chain=3, pristine_prob=0.0)
    x = torch.rand(5, 3, 40, 40)
    out, params = deg(x, [5, 6, 7, 8, 9])
    assert torch.allclose(deg.replay(x, params), out, atol=1e-6)
    u8 = RandomDegradation("kadid", max_chain=1, pristine_prob=0.0, out_dtype=torch.uint8)
    xb = (x * 255).round().to(torch.uint8)
    ob, pb = u8(xb, [1, 2, 3, 4, 5])
    assert (u8.replay(xb, pb).int() - ob.int()).abs().max() <= 1


def test_single_law_draws_one_op_at_integer_levels():
    deg = RandomDegradation("basic8", law="single")
    chains = [deg.sample(s) for s in range(200)]
    assert all(len(c) == 1 and c[0].level in (1.0, 2.0, 3.0, 4.0, 5.0) for c in chains)
    assert len({c[0].name for c in chains}) == len(deg.types)


@pytest.mark.parametrize("call, message", [
    (lambda d, x: d(x, [1, 2, 3]), "got 3 seeds for a batch of 4 images in groups of 1; expected 4"),
    (lambda d, x: d(x, [1], share=3), "share=3 must be a positive divisor of the batch size 4"),
    (lambda d, x: d(x, 7), "seeds must be 4 ints"),
])
def test_bad_seeds_and_share_are_one_line_errors(call, message):
    with pytest.raises(DistortionInputError, match=message.replace("(", r"\(")):
        call(RandomDegradation(), torch.rand(4, 3, 32, 32))


def test_compile_support_states_what_compiles(one_thread):
    assert compile_support("darken", "arniqa") == (True, "")
    ok, why = compile_support("jpeg", "arniqa")
    assert not ok and why


def test_torch_compile_runs_a_tonal_op_as_eager(one_thread):
    from synthiqa.distortions import get_distortion
    from synthiqa.distortions.base import params_to

    d = get_distortion("darken", "arniqa")
    x = torch.rand(2, 3, 48, 48)
    p = params_to(d.sample([2.0, 4.0], [1, 2]), "cpu")
    compiled = torch.compile(d.apply, fullgraph=True)
    assert torch.allclose(compiled(x, p), d.apply(x, p), atol=1e-6)


# ------------------------------------------------------------------------------------ DegradedReferences
def _set(**kw):
    args = dict(crop=32, per_reference=3, profile="arniqa", seed=3, batch_size=2, max_chain=2)
    args.update(kw)
    return DegradedReferences(_refs(), **args)


def _epochs(ds, loader, epochs=(0, 1)):
    out = []
    for e in epochs:
        ds.set_epoch(e)
        out.append(_digests(loader))
    return out


def test_stream_is_the_same_for_0_1_4_workers_and_persistent_workers(one_thread):
    ds = _set()
    expected = [_digests(ds.batch(e, j) for j in range(ds.num_batches)) for e in (0, 1)]
    assert expected[0] != expected[1] and len(expected[0]) == 8  # 15 items, batches of 2
    for workers, persistent in ((0, False), (1, False), (4, False), (4, True), (1, True)):
        ds = _set()
        assert _epochs(ds, ds.loader(num_workers=workers, persistent_workers=persistent)) == expected, \
            (workers, persistent)


def test_items_are_a_pure_function_of_seed_epoch_and_index():
    a, b = _set(), _set(batch_size=5)
    flat_a = torch.cat([a.batch(1, j)["image"] for j in range(a.num_batches)])
    flat_b = torch.cat([b.batch(1, j)["image"] for j in range(b.num_batches)])
    assert torch.equal(flat_a, flat_b)
    scenes = torch.cat([a.batch(0, j)["scene"] for j in range(a.num_batches)])
    assert sorted(np.bincount(scenes.numpy()).tolist()) == [3] * 5  # each reference per_reference times
    assert not torch.equal(_set(seed=4).batch(0, 0)["image"], a.batch(0, 0)["image"])


def test_rank_slices_are_disjoint_and_complete(one_thread):
    whole = _digests(_set().batch(0, j) for j in range(8))
    for world in (2, 3):
        slices = []
        for rank in range(world):
            ds = _set(rank=rank, world_size=world)
            slices.append(_epochs(ds, ds.loader(num_workers=2 if rank == 0 else 0), (0,))[0])
        flat = [d for s in slices for d in s]
        assert sorted(flat) == sorted(whole) and len(set(flat)) == len(flat)
        assert all(s == whole[r::world] for r, s in enumerate(slices))


def test_device_distortion_through_the_collate_hook_equals_the_worker_path(one_thread):
    worker = _set()
    device = _set(distort="device")
    raw = device.raw_batch(0, 1)
    assert raw["image"].dtype == torch.uint8 and "chain_seed" in raw
    assert _digests(device.loader(num_workers=1, device="cpu")) == _digests(worker.loader())


def test_map_style_twin_gives_the_same_items(one_thread):
    it = _set(batch_size=1)
    mp = DegradedReferencesMap(_refs(), crop=32, per_reference=3, profile="arniqa", seed=3, max_chain=2)
    mp.set_epoch(2)
    it.set_epoch(2)
    loader = torch.utils.data.DataLoader(mp, batch_size=1, num_workers=2, collate_fn=mp.collate)
    assert _digests(loader) == _digests(it.loader())
    sampler = torch.utils.data.distributed.DistributedSampler(mp, num_replicas=2, rank=1, shuffle=False)
    assert len(list(sampler)) == 8


def test_pairs_share_a_chain_across_two_references_with_half_scale_views():
    ds = DegradedReferences(_refs(h=80, w=96), crop=32, pairs=True, half_scale=True, versions=2, batch_size=3,
                            profile="arniqa", pristine_prob=0.0, seed=1)
    b = ds.batch(0, 0)
    assert b["image"].shape == (3 * 8, 3, 32, 32) and ds.images_per_item == 8
    chains = [p["chain"] for p in b["params"]]
    for g in range(0, 24, 4):  # each version's 4 views: A, A/2, B, B/2
        assert len(set(chains[g:g + 4])) == 1
        scenes = b["scene"][g:g + 4].tolist()
        assert scenes[0] == scenes[1] != scenes[2] == scenes[3]


def test_pristine_versions_and_level_labels():
    ds = DegradedReferences(_refs(), crop=32, law="single", profile="basic8", versions=3, pristine=True,
                            batch_size=2, seed=0)
    b = ds.batch(0, 0)
    assert b["version"].tolist() == [-1, 0, 1, 2] * 2
    assert b["score"][b["version"] == -1].eq(1.0).all() and b["level"][b["version"] == -1].eq(0).all()
    assert (b["type"][b["version"] >= 0] >= 0).all() and b["score"][b["version"] >= 0].lt(1.0).all()
    assert torch.equal(b["image"][0], ds.raw_batch(0, 0)["image"][0].float() / 255)


def test_reference_folder_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no usable reference image"):
        DegradedReferences(tmp_path)
    from PIL import Image

    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="crop 64 px is larger than every reference"):
        DegradedReferences(tmp_path, crop=64)
    ds = DegradedReferences(tmp_path, crop=32, batch_size=1)
    assert ds.names == ["a"] and ds.batch(0, 0)["image"].shape == (1, 3, 32, 32)


def _gloo_worker(rank, world, init, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        ds = _set()  # rank and world size come from the process group
        gathered = [None] * world
        dist.all_gather_object(gathered, _digests(ds.loader(num_workers=1)))
        if rank == 0:
            torch.save(gathered, out)
    finally:
        dist.destroy_process_group()


def test_rank_slices_under_a_real_gloo_process_group(tmp_path, one_thread):
    import torch.multiprocessing as mp

    out = tmp_path / "gathered.pt"
    mp.spawn(_gloo_worker, args=(2, f"file://{tmp_path / 'rdv'}", str(out)), nprocs=2, join=True)
    slices = torch.load(out)
    whole = _digests(_set().batch(0, j) for j in range(8))
    assert slices == [whole[0::2], whole[1::2]]


def test_the_readme_example_runs_as_written(one_thread):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## The engine inside training"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("```\n", 10)]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["x"].shape == (8, 3, 64, 64) and len(namespace["chains"]) == 8
