"Readiness for real inputs (issue #11): answers that don't depend on the batch, any image shape or mode, real tokenizers."
from pathlib import Path
import pandas as pd
import pytest, torch
from PIL import Image
from abovqa import testing
from abovqa.cli import main as cli_main
from abovqa.models import get_adapter

FAMILIES = ["blip", "vilt", "llava", "qwen"]
# mixed token lengths (1 to ~20 words) and mixed case: a padded batch differs from batch size 1 unless masks are right
MIXED_QS = ["Color?", "What is the colour of the main product shown in this photograph, answered in one word?",
            "IS IT RED?", "what shape is the object in the picture on the left side of the image, if any?",
            "Material?", "Which Pattern Does This Product Have On Its Surface?", "Is this a mug?"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black"]


def _imgs():
    "Seven images of different colours and sizes (so pixel padding differs too)."
    out = []
    for i, c in enumerate(COLORS):
        im = Image.new("RGB", (40 + 9 * i, 64 - 3 * i), "white")
        im.paste(Image.new("RGB", (20, 20), c), (5 + i, 8))
        out.append(im)
    return out


def _folder(family):
    return testing.tiny_blip_base() if family == "blip_base" else getattr(testing, f"tiny_{family}")()


@pytest.fixture(scope="module")
def loaded():
    cache = {}
    def get(family):
        if family not in cache: cache[family] = get_adapter(family.split("_")[0]).load(_folder(family))
        return cache[family]
    return get


@pytest.mark.parametrize("family", FAMILIES + ["blip_base"])
def test_batch_independent_answers_api(family, loaded):
    "Raw answers at batch size 1 and 7 are identical on questions of mixed token length."
    ad, (model, proc) = get_adapter(family.split("_")[0]), loaded(family)
    imgs = _imgs()
    single = [ad.predict(model, proc, [im], [q], max_new_tokens=6)[0] for im, q in zip(imgs, MIXED_QS)]
    batched = ad.predict(model, proc, imgs, MIXED_QS, max_new_tokens=6)
    assert batched == single
    rev = ad.predict(model, proc, imgs[::-1], MIXED_QS[::-1], max_new_tokens=6)   # other neighbours, same answers
    assert rev[::-1] == single


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    rows = []
    for i, (im, q, c) in enumerate(zip(_imgs(), MIXED_QS, COLORS)):
        p = Path(f"{i:02x}/{c}.jpg"); (d/"images"/p).parent.mkdir(parents=True, exist_ok=True)
        im.save(d/"images"/p, quality=95)
        rows.append(dict(image_path=str(p), question=q, answer=c))
    pd.DataFrame(rows).to_csv(d/"test.csv", index=False)
    return d


@pytest.mark.parametrize("family", FAMILIES + ["blip_base"])
def test_batch_independent_answers_cli(family, mixed_data, tmp_path):
    "`abovqa evaluate --batch-size 1` and `--batch-size 7` write the same raw outputs."
    raw = {}
    for bs in (1, 7):
        out = tmp_path/f"bs{bs}"
        rc = cli_main(["evaluate", "--model", family.split("_")[0], "--model-path", str(_folder(family)),
                       "--data", str(mixed_data/"test.csv"), "--images", str(mixed_data/"images"), "-o", str(out),
                       "--batch-size", str(bs), "--metrics", "em", "--max-new-tokens", "6", "--no-progress"])
        assert rc == 0
        raw[bs] = pd.read_csv(out/"predictions.csv", keep_default_na=False).raw_output.tolist()
    assert len(raw[1]) == len(MIXED_QS)
    assert raw[1] == raw[7]


# ---- 2. any image shape and mode ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory):
    "The image zoo saved as files (PNG; JPEG for CMYK and L) and opened again, as the evaluation reads them."
    d = tmp_path_factory.mktemp("zoo"); out = {}
    for name, im in testing.image_zoo().items():
        ext = "jpg" if name in ("CMYK", "L") else "png"
        p = d/f"{name.replace(';', '').replace('+', '_')}.{ext}"; im.save(p)
        with Image.open(p) as f: f.load(); out[name] = f.copy()
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_every_shape_and_mode_is_answered(family, loaded, zoo_files):
    "1x256, 256x1, 11x256, 256x11, 2x2 and L, 1, P, RGBA, LA, CMYK, I;16 files: alone and all in one batch."
    ad, (model, proc) = get_adapter(family), loaded(family)
    assert {m for m in (im.mode for im in zoo_files.values())} >= {"RGB", "L", "P", "RGBA", "LA", "CMYK"}
    names, imgs = list(zoo_files), list(zoo_files.values())
    alone = [ad.predict(model, proc, [im], ["What color is the product?"], max_new_tokens=3)[0] for im in imgs]
    batch = ad.predict(model, proc, imgs, ["What color is the product?"] * len(imgs), max_new_tokens=3)
    assert len(batch) == len(names) and all(isinstance(a, str) for a in batch)
    assert batch == alone


@pytest.mark.parametrize("family", ["llava", "qwen", "blip", "vilt"])
def test_every_shape_trains(family, loaded):
    "The training batch (what the fine-tuning collator builds) takes the same images and gives a finite loss."
    ad, (model, proc) = get_adapter(family), loaded(family)
    zoo = testing.image_zoo()
    kw = {}
    b = ad.train_batch(proc, list(zoo.values()), ["What color is it?"] * len(zoo), ["red"] * len(zoo), **kw)
    assert torch.isfinite(model(**b).loss)


def test_safe_image_rules():
    from transformers import ViltImageProcessor
    from abovqa.models import safe_image, max_ratio
    real_vilt = ViltImageProcessor(size={"shortest_edge": 384}, size_divisor=32)
    for name, im in testing.image_zoo().items():
        for fam, proc in [("vilt", real_vilt), ("qwen", None), ("blip", None), ("llava", None)]:
            out = safe_image(im, fam, proc)
            assert out.mode == "RGB"
            lim = max_ratio(fam, proc)
            if lim: assert max(out.size) <= lim * min(out.size)
            else: assert out.size == im.size
        real_vilt(safe_image(im, "vilt", real_vilt), return_tensors="pt")   # the real ViLT settings take it
    ok = Image.new("RGB", (256, 15)); assert safe_image(ok, "vilt", real_vilt) is ok   # ABO's 256x15 fits as it is
    with pytest.raises(ValueError): real_vilt(Image.new("RGB", (256, 11)), return_tensors="pt")   # why the rule exists
