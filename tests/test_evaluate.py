"The evaluation runner, the `abovqa evaluate` command and inference.py, on tiny models and a handful of images."
import json, runpy, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest, torch
from PIL import Image
from abovqa import testing
from abovqa.fixtures import cli_argv, run_cli
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
    res = evaluate_model(family="blip", model_path=testing.tiny_blip(), data=data/"test.csv", images=data/"images", out=out,
                         batch_size=4, max_new_tokens=3, metrics=["em", "f1", "rouge"], progress=False)
    info = json.loads((out/"run.json").read_text())
    assert info["skipped_images"] == 2 and info["n_answered"] == 12 and info["n_rows"] == 14
    assert info["skipped_reasons"] == {"missing": 1, "unreadable (UnidentifiedImageError)": 1}
    assert info["config"]["stage"] == "zero-shot" and info["config"]["family"] == "blip"
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
        evaluate_model(family=family, model_path=folder, data=data/"test.csv", images=data/"images", out=tmp_path/f"bs{bs}",
                       batch_size=bs, max_new_tokens=3, metrics=["em"], progress=False)
        runs[bs] = pd.read_csv(tmp_path/f"bs{bs}/predictions.csv", keep_default_na=False).raw_output.tolist()
    assert len(runs[1]) == 12 and runs[1] == runs[5]



def _random_llava_adapter(out):
    "Save a LoRA adapter with random lora_B weights (so it changes answers) for the tiny LLaVA; returns the base folder."
    from peft import get_peft_model
    from abovqa.models import get_adapter
    ad, folder = get_adapter("llava"), testing.tiny_llava()
    base, _ = ad.load(folder)
    pm = get_peft_model(base, ad.lora_config())
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n: p.normal_(0, 1.0)
    pm.save_pretrained(out)
    return folder

def test_adapter_run_is_fine_tuned(data, tmp_path):
    folder = _random_llava_adapter(tmp_path/"adapter")
    evaluate_model(family="llava", model_path=folder, data=data/"test.csv", images=data/"images", out=tmp_path/"zs",
                   limit=4, metrics=["em"], progress=False)
    evaluate_model(family="llava", model_path=folder, data=data/"test.csv", images=data/"images", out=tmp_path/"ft",
                   lora_dir=tmp_path/"adapter", limit=4,
                   metrics=["em", "cosine"], st_model=testing.minilm_path(), progress=False)
    info = json.loads((tmp_path/"ft/run.json").read_text())
    assert info["config"]["stage"] == "fine-tuned" and info["config"]["lora_dir"] == str(tmp_path/"adapter")
    assert "cosine" in json.loads((tmp_path/"ft/metrics.json").read_text())["summary"]
    zs, ft = (pd.read_csv(tmp_path/f"{r}/predictions.csv", keep_default_na=False).raw_output.tolist() for r in ("zs", "ft"))
    assert len(zs) == len(ft) == 4 and zs != ft


def test_cli_subprocess(data, tmp_path):
    out = tmp_path/"cli"
    r = run_cli("evaluate",
                "--family", "llava", "--model-path", str(testing.tiny_llava()), "--data", str(data/"test.csv"),
                "--images", str(data/"images"), "-o", str(out), "--metrics", "em,f1", "--batch-size", "3",
                "--stage", "zero-shot", "--no-progress")
    assert r.code == 0, r.err[-2000:]
    assert "exact_match" in r.out
    assert len(pd.read_csv(out/"predictions.csv")) == 12
    assert json.loads((out/"run.json").read_text())["skipped_images"] == 2


def test_inference_contract(data, tmp_path, monkeypatch):
    "python inference.py --image_dir DIR --csv_path CSV writes results.csv with generated_answer in the CWD."
    t = pd.read_csv(data/"test.csv").rename(columns={"image_path": "image_name"})
    t.to_csv(tmp_path/"in.csv", index=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["inference.py", "--image_dir", str(data/"images"), "--csv_path", "in.csv",
                                      "--family", "blip", "--model-path", str(testing.tiny_blip()), "--batch-size", "8"])
    with pytest.raises(SystemExit) as e: runpy.run_path(str(ROOT/"inference.py"), run_name="__main__")
    assert e.value.code == 0
    res = pd.read_csv(tmp_path/"results.csv", keep_default_na=False)
    assert list(res.columns) == ["image_name", "question", "answer", "generated_answer"] and len(res) == 14
    assert res.generated_answer.iloc[-2:].tolist() == ["", ""]
    assert all(len(a.split()) <= 1 for a in res.generated_answer)


# --- options, faults, journal/resume, --gpus, length grouping (issues #12, #16, #11) ---

@pytest.mark.parametrize("opts,code,msg", [
    (["--normalizer", "nope"], 2, "--normalizer: unknown normalizer"),
    (["--metrics", "em,bleu"], 2, "--metrics: unknown metrics ['bleu']"),
    (["--batch-size", "0"], 2, "--batch-size must be an integer >= 1"),
    (["--limit", "-1"], 2, "--limit must be"),
    (["--limit", "0"], 1, "no rows to evaluate"),
    (["--gpus", "2", "--device-map", "auto"], 2, "cannot be combined"),
])
def test_bad_options_fail_before_loading(data, tmp_path, opts, code, msg, capsys):
    "The model path does not exist: the option error must come first, in one line, with no run folder left."
    from abovqa.cli import main
    # --model: the old name of --family, still accepted
    rc = main(["evaluate", "--model", "blip", "--model-path", str(tmp_path/"no-model"), "--data", str(data/"test.csv"),
               "--images", str(data/"images"), "-o", str(tmp_path/"run"), *opts])
    err = capsys.readouterr().err
    assert rc == code, err
    assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path/"run").exists()


def test_wrong_images_folder_and_nothing_readable(data, tmp_path, capsys):
    from abovqa.cli import main
    rc = main(["evaluate", "--family", "vilt", "--model-path", str(tmp_path/"no-model"), "--data", str(data/"test.csv"),
               "--images", str(data), "-o", str(tmp_path/"run")])
    err = capsys.readouterr().err
    assert rc == 1 and "none of the first" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    t = pd.DataFrame([dict(image_path="ff/corrupt.jpg", question="q?", answer="a"), dict(image_path="zz/no.jpg", question="q?", answer="a")])
    t.to_csv(tmp_path/"t.csv", index=False)
    with pytest.raises(Exception) as e:
        evaluate_model(family="vilt", model_path=testing.tiny_vilt(), data=tmp_path/"t.csv", images=data/"images", out=tmp_path/"run",
                       metrics=["em"], progress=False)
    assert "no row could be answered" in str(e.value) and getattr(e.value, "code", None) == 1
    assert json.loads((tmp_path/"run/run.json").read_text())["status"] == "failed"
    assert len(pd.read_csv(tmp_path/"run/skipped.csv")) == 2


def test_failing_image_is_skipped_with_reason(data, tmp_path, monkeypatch, capsys):
    "A processor that raises for one image size (ViLT's thin-image ValueError) skips that image only."
    from abovqa.models import ViltAdapter
    orig = ViltAdapter.inputs
    def picky(self, processor, images, questions):
        if any(im.size == (56, 48) for im in images): raise ValueError("Size must contain 'height' and 'width'")
        return orig(self, processor, images, questions)
    monkeypatch.setattr(ViltAdapter, "inputs", picky)
    out = tmp_path/"run"
    (out).mkdir(); (out/"skipped.csv").write_text("row,image_path,reason\n0,stale.jpg,old\n")
    evaluate_model(family="vilt", model_path=testing.tiny_vilt(), data=data/"test.csv", images=data/"images", out=out,
                   batch_size=4, metrics=["em"], progress=False)
    info = json.loads((out/"run.json").read_text())
    reason = "processor error: ValueError: Size must contain 'height' and 'width'"
    assert info["n_answered"] == 10 and info["skipped_reasons"][reason] == 2
    sk = pd.read_csv(out/"skipped.csv")
    assert len(sk) == info["skipped_images"] == 4 and "stale.jpg" not in sk.image_path.tolist()
    assert "4 of 14 rows skipped" in capsys.readouterr().err and str(out/"skipped.csv")


def test_stale_skipped_csv_is_removed(data, tmp_path):
    out = tmp_path/"run"; out.mkdir()
    (out/"skipped.csv").write_text("row,image_path,reason\n0,stale.jpg,old\n")
    evaluate_model(family="vilt", model_path=testing.tiny_vilt(), data=data/"test.csv", images=data/"images", out=out,
                   limit=4, metrics=["em"], progress=False)
    assert json.loads((out/"run.json").read_text())["skipped_images"] == 0 and not (out/"skipped.csv").exists()


def test_garbage_answers_are_flagged(data, tmp_path, monkeypatch, capsys):
    from abovqa.models import ViltAdapter
    monkeypatch.setattr(ViltAdapter, "predict", lambda self, m, p, images, questions, **kw: ["!!!"] * len(questions))
    out = tmp_path/"run"
    evaluate_model(family="vilt", model_path=testing.tiny_vilt(), data=data/"test.csv", images=data/"images", out=out,
                   metrics=["em"], progress=False)
    assert "fp16-overflow" in capsys.readouterr().err
    for f in ("metrics.json", "run.json"): assert "fp16-overflow" in json.loads((out/f).read_text())["garbage_warning"]


@pytest.fixture(scope="module")
def big(data, tmp_path_factory):
    "600 rows over the six images, questions of mixed length."
    d = tmp_path_factory.mktemp("big")
    qs = ["Is it red?", "What color is the product?", "What is the main color of the product shown in this picture?",
          "Color?", "Is the object in the photo made of wood or of metal, and is it blue?"]
    rows = [dict(image_path=f"{i % 6:02x}/{COLORS[i % 6]}.jpg", question=qs[(i * 7) % len(qs)], answer=COLORS[i % 6])
            for i in range(600)]
    pd.DataFrame(rows).to_csv(d/"big.csv", index=False)
    return d/"big.csv"


def test_kill9_and_resume_gives_identical_predictions(data, big, tmp_path, capsys):
    import os, signal, time
    from abovqa.cli import main
    args = ["--family", "vilt", "--model-path", str(testing.tiny_vilt()), "--data", str(big), "--images", str(data/"images"),
            "--metrics", "em,f1", "--no-progress"]
    assert main(["evaluate", *args, "--batch-size", "8", "-o", str(tmp_path/"full")]) == 0
    out = tmp_path/"killed"
    p = subprocess.Popen(cli_argv("evaluate", *args, "--batch-size", "1", "-o", out), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    j, t0 = out/"journal-0.jsonl", time.time()
    while p.poll() is None and time.time() - t0 < 120:
        if j.exists() and j.read_bytes().count(b"\n") >= 20: break
        time.sleep(0.01)
    assert p.poll() is None, "the run finished before it could be killed"
    os.kill(p.pid, signal.SIGKILL); p.wait()
    answered = j.read_bytes().count(b"\n")
    assert 20 <= answered < 600 and not (out/"metrics.json").exists()
    capsys.readouterr()
    assert main(["evaluate", *args, "--batch-size", "8", "-o", str(out)]) == 0
    assert "resuming:" in capsys.readouterr().err
    assert (out/"predictions.csv").read_bytes() == (tmp_path/"full/predictions.csv").read_bytes()
    info = json.loads((out/"run.json").read_text())
    assert info["resumed_rows"] >= 20 and info["n_answered"] == 600
    assert json.loads((out/"metrics.json").read_text())["summary"] == json.loads((tmp_path/"full/metrics.json").read_text())["summary"]
    # the journal is tied to its inputs
    assert main(["evaluate", *args, "--max-new-tokens", "3", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "holds answers for other inputs (max_new_tokens differ)" in err and "--restart" in err
    assert main(["evaluate", *args, "--limit", "20", "--restart", "-o", str(out)]) == 0
    assert json.loads((out/"run.json").read_text())["n_answered"] == 20


@pytest.mark.parametrize("family", ["blip", "vilt", "llava", "qwen"])
def test_length_grouping_matches_batch_size_one(family, data, big, tmp_path):
    "Mixed-length questions, batched longest-first: the same answers as one question at a time, in the input order."
    folder = getattr(testing, f"tiny_{family}")()
    runs = {}
    for bs in (1, 8):
        evaluate_model(family=family, model_path=folder, data=big, images=data/"images", out=tmp_path/f"bs{bs}",
                       batch_size=bs, limit=40, max_new_tokens=3, metrics=["em"], progress=False)
        runs[bs] = (tmp_path/f"bs{bs}/predictions.csv").read_bytes()
    assert runs[1] == runs[8]
    assert pd.read_csv(tmp_path/"bs8/predictions.csv").question.tolist() == pd.read_csv(big).question[:40].tolist()
    assert json.loads((tmp_path/"bs8/run.json").read_text())["timings"]["padding_fraction"] < 0.1


def test_gpus_two_cpu_processes_identical_and_resumable(data, big, tmp_path):
    "--gpus 2 on CPU (torchrun): byte-identical predictions and metrics; with --lora-dir; continues a partial journal."
    folder = _random_llava_adapter(tmp_path/"adapter")
    kw = dict(lora_dir=tmp_path/"adapter", limit=60, batch_size=4, max_new_tokens=3, metrics=["em", "f1"], progress=False)
    one = evaluate_model(family="llava", model_path=folder, data=big, images=data/"images", out=tmp_path/"one", **kw)
    part = tmp_path/"two"; part.mkdir()
    for f in ("journal.json",): (part/f).write_bytes((tmp_path/"one"/f).read_bytes())
    lines = (tmp_path/"one/journal-0.jsonl").read_bytes().splitlines(keepends=True)
    (part/"journal-0.jsonl").write_bytes(b"".join(lines[:20]))           # an interrupted earlier run
    two = evaluate_model(family="llava", model_path=folder, data=big, images=data/"images", out=part, gpus=2, **kw)
    assert (part/"predictions.csv").read_bytes() == (tmp_path/"one/predictions.csv").read_bytes()
    assert two["summary"] == one["summary"]
    info = json.loads((part/"run.json").read_text())
    assert info["resumed_rows"] == 20 and info["config"]["gpus"] == 2 and info["config"]["lora_dir"] == str(tmp_path/"adapter")
    assert (part/"journal-1.jsonl").exists() and len((part/"journal-1.jsonl").read_bytes().splitlines()) == 20


def test_inference_errors_are_one_line_and_skips_counted(data, tmp_path, monkeypatch, capsys):
    "inference.py: a bad option or input is one line with exit 2/1; a refused image is skipped and counted on stderr."
    monkeypatch.chdir(tmp_path)
    ns = runpy.run_path(str(ROOT/"inference.py"))
    base = ["--image_dir", str(data/"images"), "--family", "vilt", "--model-path", str(testing.tiny_vilt())]
    capsys.readouterr()
    assert ns["main"]([*base, "--csv_path", "nope.csv"]) == 1
    assert ns["main"]([*base, "--csv_path", str(data/"test.csv"), "--batch-size", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--csv_path nope.csv: no such file" in err[0] and "--batch-size" in err[1]
    t = pd.read_csv(data/"test.csv").rename(columns={"image_path": "image_name"}); t.to_csv("in.csv", index=False)
    from abovqa.models import ViltAdapter
    orig = ViltAdapter.inputs
    def picky(self, processor, images, questions):
        if any(im.size == (56, 48) for im in images): raise ValueError("Size must contain 'height' and 'width'")
        return orig(self, processor, images, questions)
    monkeypatch.setattr(ViltAdapter, "inputs", picky)
    assert ns["main"]([*base, "--csv_path", "in.csv"]) == 0
    assert "4 of 14 image(s) skipped" in capsys.readouterr().err
    res = pd.read_csv("results.csv", keep_default_na=False)
    assert len(res) == 14 and (res.generated_answer == "").sum() == 4
