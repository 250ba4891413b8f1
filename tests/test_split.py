"`abovqa split`: grouped by image (no image in two splits), stratified by question type, sizes and seed recorded."
import json, re

import numpy as np
import pandas as pd
import pytest

from abovqa.cli import main
from abovqa.split import PRESETS, SPLITS, split_vqa
from abovqa.vocab import question_type

QUESTIONS = ["What color is the {n}?", "What shape is the {n}?", "Is the {n} striped?", "How many {n}s are there?",
             "What material is the {n} made of?", "What type of product is this?"]


def vqa_table(n_images=300, seed=0):
    "A vqa.csv-like table: 1-6 questions per image, uneven question-type mix, some images sharing an item."
    r = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        k = int(r.integers(1, 7))
        for q in r.choice(QUESTIONS, size=k, replace=False, p=[.3, .2, .2, .1, .1, .1]):
            rows.append(dict(image_path=f"{i % 97:02x}/{i:05d}.jpg", question=q.format(n="mug"), answer="red",
                             image_id=f"img{i:05d}", item_id=f"item{i // 2}", prompt="p", model="metadata"))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("seed", [0, 42])
def test_no_image_in_two_splits(preset, seed):
    df = vqa_table(seed=seed)
    parts = split_vqa(df, preset, seed=seed)
    ids = {k: set(v.image_id) for k, v in parts.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert sum(len(v) for v in parts.values()) == len(df)
    for k, f in zip(SPLITS, PRESETS[preset]):
        assert abs(len(parts[k]) / len(df) - f) < 0.03, (k, len(parts[k]), len(df))


def test_stratified_by_question_type():
    df = vqa_table(n_images=600)
    whole = df.question.map(question_type).value_counts(normalize=True)
    for k, v in split_vqa(df, "llm", seed=3).items():
        share = v.question.map(question_type).value_counts(normalize=True).reindex(whole.index, fill_value=0)
        assert (share - whole).abs().max() < 0.06, (k, share.round(3).to_dict(), whole.round(3).to_dict())


def test_cli_writes_split_folder(tmp_path, capsys):
    df = vqa_table()
    bad = pd.DataFrame([dict(image_path="", question="What color?", answer="red", image_id="", item_id="",
                             prompt="", model=""),
                        dict(image_path="x.jpg", question="What color?", answer="", image_id="x", item_id="",
                             prompt="", model="")])
    pd.concat([df, bad]).to_csv(tmp_path / "vqa.csv", index=False)
    assert main(["split", str(tmp_path / "vqa.csv"), "-o", str(tmp_path / "s"), "--preset", "llm", "--seed", "5"]) == 0
    err = capsys.readouterr().err
    assert f"vqa.csv:{len(df) + 2}" in err and f"vqa.csv:{len(df) + 3}" in err
    info = json.loads((tmp_path / "s" / "split.json").read_text())
    assert (info["preset"], info["seed"], info["skipped"], info["fractions"]) == ("llm", 5, 2, [0.8, 0.1, 0.1])
    assert info["question_type_fn"] == "abovqa.vocab.question_type"
    parts = {k: pd.read_csv(tmp_path / "s" / f"{k}.csv") for k in SPLITS}
    for k, v in parts.items():
        assert list(v.columns) == list(df.columns)
        assert info["sizes"][k] == dict(rows=len(v), images=v.image_id.nunique())
    assert sum(len(v) for v in parts.values()) == len(df)
    # the same command gives the same split
    assert main(["split", str(tmp_path / "vqa.csv"), "-o", str(tmp_path / "s2"), "--preset", "llm", "--seed", "5"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "s2" / "test.csv"), parts["test"])


def test_groups_by_path_without_image_id(tmp_path):
    df = vqa_table().drop(columns="image_id")
    parts = split_vqa(df, "blip", seed=1)
    paths = [set(v.image_path) for v in parts.values()]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])


def test_missing_column_names_file(tmp_path, capsys):
    pd.DataFrame(dict(question=["q"], answer=["a"])).to_csv(tmp_path / "v.csv", index=False)
    assert main(["split", str(tmp_path / "v.csv"), "-o", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert re.search(r"^abovqa split: .*v\.csv: missing column\(s\) \['image_path'\]", err) and "Traceback" not in err
