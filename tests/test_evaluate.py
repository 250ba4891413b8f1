"The evaluation runner, the `abovqa evaluate` command and inference.py, on tiny models and a handful of images."
import json, runpy, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest, torch
from PIL import Image
from abovqa import testing
from abovqa.evaluate import evaluate_model

ROOT = Path(__file__).resolve().parents[1]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    "images/<hh>/<id>.jpg for six colours, one missing and one corrupt file; a 14-row test table."
    d = tmp_path_factory.mktemp("vqa")
    rows = []
    for i, c in enumerate(COLORS):
        p = Path(f"{i:02x}/{c}.jpg"); (d/"images"/p).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40 + 8 * i, 48), c).save(d/"images"/p)
        rows += [dict(image_path=str(p), question="What color is the product?", answer=c),
                 dict(image_path=str(p), question="Is the product red?", answer="yes" if c == "red" else "no")]
    (d/"images/ff").mkdir(); (d/"images/ff/corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rows += [dict(image_path="ee/missing.jpg", question="What color is it?", answer="red"),
             dict(image_path="ff/corrupt.jpg", question="What color is it?", answer="blue")]
    pd.DataFrame(rows).to_csv(d/"test.csv", index=False)
    return d


def test_run_folder_and_skipped_images(data, tmp_path):
    out = tmp_path/"run"
    res = evaluate_model("blip", testing.tiny_blip(), data/"test.csv", data/"images", out, batch_size=4,
                         max_new_tokens=3, metrics=["em", "f1", "rouge"], progress=False)
    info = json.loads((out/"run.json").read_text())
    assert info["skipped_images"] == 2 and info["n_answered"] == 12 and info["n_rows"] == 14
    assert info["skipped_reasons"] == {"missing": 1, "unreadable (UnidentifiedImageError)": 1}
    assert info["config"]["stage"] == "zero-shot" and info["config"]["model"] == "blip"
    assert {"load_s", "predict_s", "samples_per_s"} <= set(info["timings"]) and "versions" in info
    m = json.loads((out/"metrics.json").read_text())
    assert m == res and m["n"] == 12 and m["normalizer"] == "short"
    assert {"exact_match", "token_f1", "rouge_l"} <= set(m["summary"])
    assert set(m["by_question_type"]) == {"color", "yes/no"}
    assert m["by_question_type"]["color"]["n"] == 6 and 0 <= m["answer_form"]["single_word_share"] <= 1
    preds = pd.read_csv(out/"predictions.csv", keep_default_na=False)
    assert len(preds) == 12
    assert {"image_path", "question", "answer", "raw_output", "prediction", "correct", "question_type"} <= set(preds)
    assert preds.correct.mean() == pytest.approx(m["summary"]["exact_match"])
    skipped = pd.read_csv(out/"skipped.csv")
    assert sorted(skipped.image_path) == ["ee/missing.jpg", "ff/corrupt.jpg"]


@pytest.mark.parametrize("family", ["vilt", "qwen"])
def test_batch_size_does_not_change_answers(family, data, tmp_path):
    folder = getattr(testing, f"tiny_{family}")()
    runs = {}
    for bs in (1, 5):
        evaluate_model(family, folder, data/"test.csv", data/"images", tmp_path/f"bs{bs}", batch_size=bs,
                       max_new_tokens=3, metrics=["em"], progress=False)
        runs[bs] = pd.read_csv(tmp_path/f"bs{bs}/predictions.csv", keep_default_na=False).raw_output.tolist()
    assert len(runs[1]) == 12 and runs[1] == runs[5]


def test_adapter_run_is_fine_tuned(data, tmp_path):
    from peft import get_peft_model
    from abovqa.models import get_adapter
    ad, folder = get_adapter("llava"), testing.tiny_llava()
    base, _ = ad.load(folder)
    pm = get_peft_model(base, ad.lora_config())
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n: p.normal_(0, 1.0)
    pm.save_pretrained(tmp_path/"adapter")
    evaluate_model("llava", folder, data/"test.csv", data/"images", tmp_path/"zs", limit=4, metrics=["em"], progress=False)
    evaluate_model("llava", folder, data/"test.csv", data/"images", tmp_path/"ft", adapter=tmp_path/"adapter", limit=4,
                   metrics=["em", "cosine"], st_model=testing.minilm_path(), progress=False)
    info = json.loads((tmp_path/"ft/run.json").read_text())
    assert info["config"]["stage"] == "fine-tuned" and info["config"]["adapter"] == str(tmp_path/"adapter")
    assert "cosine" in json.loads((tmp_path/"ft/metrics.json").read_text())["summary"]
    zs, ft = (pd.read_csv(tmp_path/f"{r}/predictions.csv", keep_default_na=False).raw_output.tolist() for r in ("zs", "ft"))
    assert len(zs) == len(ft) == 4 and zs != ft


def test_cli_subprocess(data, tmp_path):
    out = tmp_path/"cli"
    r = subprocess.run([sys.executable, "-c", "import sys; from abovqa.cli import main; sys.exit(main())", "evaluate",
                        "--model", "llava", "--model-path", str(testing.tiny_llava()), "--data", str(data/"test.csv"),
                        "--images", str(data/"images"), "-o", str(out), "--metrics", "em,f1", "--batch-size", "3",
                        "--stage", "zero-shot", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "exact_match" in r.stdout
    assert len(pd.read_csv(out/"predictions.csv")) == 12
    assert json.loads((out/"run.json").read_text())["skipped_images"] == 2


def test_inference_contract(data, tmp_path, monkeypatch):
    "python inference.py --image_dir DIR --csv_path CSV writes results.csv with generated_answer in the CWD."
    t = pd.read_csv(data/"test.csv").rename(columns={"image_path": "image_name"})
    t.to_csv(tmp_path/"in.csv", index=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["inference.py", "--image_dir", str(data/"images"), "--csv_path", "in.csv",
                                      "--model", "blip", "--model-path", str(testing.tiny_blip()), "--batch-size", "8"])
    with pytest.raises(SystemExit) as e: runpy.run_path(str(ROOT/"inference.py"), run_name="__main__")
    assert e.value.code == 0
    res = pd.read_csv(tmp_path/"results.csv", keep_default_na=False)
    assert list(res.columns) == ["image_name", "question", "answer", "generated_answer"] and len(res) == 14
    assert res.generated_answer.iloc[-2:].tolist() == ["", ""]
    assert all(len(a.split()) <= 1 for a in res.generated_answer)
