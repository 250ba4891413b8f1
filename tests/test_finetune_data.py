"""Fine-tuning data integrity: a run folder refuses other data or settings (`--restart` sets it aside), a resumed run
records the learning rate it really used, length-grouped batches keep a seeded order that a resumed run reproduces,
bad images are skipped (a wrong --images folder is one clear error), and `load(lora_dir=...)` refuses an adapter
made for another family or base model."""
import json, shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from abovqa import testing
from abovqa.fixtures import colour_split
from abovqa.cli import main
from abovqa.core import UserError
from abovqa.checkpoints import FINGERPRINT
from abovqa.finetune import finetune
from abovqa.train_data import SKIP_LOG, VQACollator, VQADataset
from abovqa.models import get_adapter, check_adapter

COLORS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "yellow": (230, 210, 20)}
QUESTIONS = ["what color?", "what color is the product?", "what is the main color of this product shown here?",
             "in the picture of the product on a white background, what color is the object in the middle?"]


def make_split(root, **kw):
    "A split folder of coloured squares with questions of four different lengths (`colour_split` options in `kw`)."
    return colour_split(root, COLORS, **{"val": 8, "test": 4, "questions": QUESTIONS, "size": 32, **kw})


@pytest.fixture(scope="module")
def split(tmp_path_factory): return make_split(tmp_path_factory.mktemp("toy"))


OPTS = dict(preset="demo", lr=5e-3, batch_size=4, every=5, max_eval_samples=4, quant="none",
            set_args={"logging_steps": 5})


def run(split, out, **kw):
    data, images = split
    return finetune(family="blip", model_path=str(testing.tiny_blip()), data=data, images=images, out=out, **{**OPTS, **kw})


def cli(split, out, *extra):
    data, images = split
    return main(["finetune", "--family", "blip", "--model-path", str(testing.tiny_blip()), "--data", str(data),
                 "--images", str(images), "-o", str(out), "--preset", "demo", "--lr", "0.005", "--batch-size", "4",
                 "--every", "5", "--max-eval-samples", "4", "--set", "logging_steps=5", *extra])


@pytest.fixture
def seen(monkeypatch):
    "Records the training rows (image paths) every collator call receives, batch by batch."
    batches, call = [], VQACollator.__call__
    def spy(self, rows):
        if rows and str(rows[0]["image_path"]).startswith("tr/"): batches.append([r["image_path"] for r in rows])
        return call(self, rows)
    monkeypatch.setattr(VQACollator, "__call__", spy)
    return batches


def test_resumed_run_sees_the_same_batches(split, tmp_path, seen):
    "Length-grouped, seeded order: a run resumed mid-epoch trains on exactly the batches of an uninterrupted run."
    run(split, tmp_path/"full", max_steps=12)                      # 8 steps per epoch: crosses an epoch boundary
    full = list(seen); seen.clear()
    # grouped: each mega-batch (2 batches of 4 here) is sorted by length, longest first (its first row may be
    # swapped to put the longest row of the epoch first)
    lengths = pd.read_csv(split[0]/"train.csv").set_index("image_path").question.str.len()
    for k in range(0, 12, 2):
        mega = [lengths[p] for p in full[k] + full[k + 1]][1:]
        assert mega == sorted(mega, reverse=True), (k, mega)
    run(split, tmp_path/"cut", max_steps=10)
    shutil.rmtree(tmp_path/"cut/checkpoint-10")                   # as if killed after the step-5 checkpoint
    seen.clear()
    run(split, tmp_path/"cut", max_steps=12)
    info = json.loads((tmp_path/"cut/run.json").read_text())
    assert info["config"]["resumed_from"] == "checkpoint-5" and info["metrics"]["global_step"] == 12
    assert seen == full[5:], (seen, full[5:])


def test_rerun_with_other_data_or_lr_is_refused_and_restart_sets_aside(split, tmp_path, capsys):
    out = tmp_path/"run"
    assert cli(split, out, "--max-steps", "5") == 0
    fp = json.loads((out/FINGERPRINT).read_text())
    assert fp["learning_rate"] == 0.005 and len(fp["train_sha256"]) == 64 and fp["family"] == "blip"
    other = make_split(tmp_path/"other", shift=1)
    for args, what in [(("--max-steps", "5", "--lr", "0.001"), "learning_rate 0.005 -> 0.001"),
                       (("--max-steps", "5", "--seed", "1"), "seed 42 -> 1"),
                       (("--max-steps", "5", "--lora-r", "4"), "lora")]:
        capsys.readouterr()
        assert cli(split, out, *args) == 2
        err = capsys.readouterr().err
        assert what in err and "--restart" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    capsys.readouterr()
    assert cli(other, out, "--max-steps", "5") == 2
    assert "train.csv content" in capsys.readouterr().err
    info = json.loads((out/"run.json").read_text())
    assert info["status"] == "finished" and info["config"]["data"] == str(split[0])   # untouched
    # harmless changes stay allowed: more steps and other logging resume the same run
    assert cli(split, out, "--max-steps", "10", "--set", "logging_steps=2") == 0
    info = json.loads((out/"run.json").read_text())
    assert info["config"]["resumed_from"] == "checkpoint-5" and info["metrics"]["global_step"] == 10
    assert info["config"]["learning_rate_effective"] == info["config"]["training_args"]["learning_rate"] == 0.005
    # --restart sets the old run aside and trains afresh with the new rate, which run.json states
    assert cli(other, out, "--max-steps", "5", "--lr", "0.001", "--restart") == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and (aside[0]/"checkpoint-10").is_dir()
    info = json.loads((out/"run.json").read_text())
    assert info["config"]["resumed_from"] is None and info["config"]["data"] == str(other[0])
    assert info["config"]["learning_rate_effective"] == info["config"]["training_args"]["learning_rate"] == 0.001
    assert "--restart" not in info["rerun"]


def test_bad_images_are_skipped_and_a_wrong_folder_is_one_error(tmp_path, capsys):
    data, images = make_split(tmp_path/"toy")
    small = images/"images/small"
    (small/"tr/train0.jpg").unlink()
    (small/"tr/train1.jpg").write_bytes(b"not a jpeg")
    out = run((data, images), tmp_path/"run", max_steps=3)
    console = capsys.readouterr().out
    assert "2 of 32 rows of" in console and "train0.jpg" in console, console
    info = json.loads((out/"run.json").read_text())
    assert info["status"] == "finished" and info["config"]["train_rows"] == 30 and info["config"]["skipped_rows"] == 2
    assert len(pd.read_csv(out/"skipped_rows.csv")) == 2
    # --images one level off: most images missing is a usage mistake, named with the folder
    assert cli((data, images/"images"), tmp_path/"run2", "--max-steps", "2") == 1
    err = capsys.readouterr().err
    assert "point --images at the ABO root" in err and str(images/"images") in err and "Traceback" not in err


def test_collator_skips_images_the_processor_rejects(tmp_path, capsys):
    "Lazily opened rows: an unreadable file and an image the processor rejects are skipped and logged, the rest train."
    data, images = make_split(tmp_path/"toy", train=8, val=2, test=2)
    (images/"images/small/tr/train3.jpg").write_bytes(b"truncated")
    ad = get_adapter("blip"); _, proc = ad.load(testing.tiny_blip())
    ds = VQADataset(data/"train.csv", images, cache=False)

    class Picky:   # rejects 1-px-wide images, as ViLT's processor does very thin ones
        def train_batch(self, p, imgs, qs, ans):
            if any(min(im.size) < 2 for im in imgs): raise ValueError("Size must contain 'height' and 'width'")
            return ad.train_batch(p, imgs, qs, ans)
    rows = [ds[i] for i in range(8)]
    rows[5] = {**rows[5], "image": Image.new("RGB", (1, 256))}
    col = VQACollator(Picky(), proc, log=tmp_path/SKIP_LOG)
    batch = col(rows)
    assert batch["labels"].shape[0] == 6 and col.skipped == 2
    console = capsys.readouterr().out
    assert "skipped image tr/train3.jpg" in console and "processor failed" in console
    assert [l.split("\t")[0] for l in (tmp_path/SKIP_LOG).read_text().splitlines()] == ["tr/train3.jpg", "tr/train5.jpg"]


@pytest.fixture(scope="module")
def blip_adapter(tmp_path_factory):
    "A LoRA adapter on the tiny BLIP with abovqa's run.json beside it (as a finetune RUN_DIR has)."
    from peft import get_peft_model
    ad, base = get_adapter("blip"), testing.tiny_blip()
    m, _ = ad.load(base)
    folder = tmp_path_factory.mktemp("adapter")
    get_peft_model(m, ad.lora_config()).save_pretrained(folder)
    (folder/"run.json").write_text(json.dumps(dict(config=dict(model="blip", model_path=str(base)))))
    return folder, base


def test_adapter_for_another_family_or_base_is_refused(blip_adapter, tmp_path):
    folder, base = blip_adapter
    assert check_adapter(folder, "blip", base)["base_model_name_or_path"] == str(base)
    m, _ = get_adapter("blip").load(base, lora_dir=folder)               # the right base loads
    assert type(m).__name__.startswith("Peft")
    with pytest.raises(UserError, match="is a blip adapter, not vilt: use --family blip"):
        get_adapter("vilt").load(testing.tiny_vilt(), lora_dir=folder)
    with pytest.raises(UserError, match="was trained on"):
        get_adapter("blip").load(testing.tiny_blip_base(), lora_dir=folder)
    bare = tmp_path/"bare"; shutil.copytree(folder, bare); (bare/"run.json").unlink()    # peft's files only
    with pytest.raises(UserError, match=f"was trained on {base}, not"):
        get_adapter("vilt").load(testing.tiny_vilt(), lora_dir=bare)
    same_name = tmp_path/"copy"/Path(base).name; shutil.copytree(base, same_name)        # a copy of the same base
    check_adapter(bare, "blip", same_name)
    with pytest.raises(UserError, match="no adapter_config.json"):
        check_adapter(tmp_path, "blip", base)


def test_evaluate_cli_refuses_a_mismatched_adapter(blip_adapter, tmp_path, capsys):
    folder, base = blip_adapter
    data, images = make_split(tmp_path/"toy", train=0, val=0, test=4)
    rc = main(["evaluate", "--model", "vilt", "--model-path", str(testing.tiny_vilt()), "--adapter", str(folder),
               "--data", str(data/"test.csv"), "--images", str(images/"images/small"), "-o", str(tmp_path/"ev"),
               "--metrics", "exact_match"])
    err = capsys.readouterr().err
    assert rc == 1 and "is a blip adapter, not vilt" in err and "Traceback" not in err, err
    assert not (tmp_path/"ev/run.json").exists()
