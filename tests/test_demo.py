"`abovqa demo` end to end as a user runs it (a real subprocess), in its quick variant: every stage runs and writes its files."
import json, os, re

import pandas as pd
import pytest

from abovqa.fixtures import run_cli
from abovqa.testing import tiny_blip


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")/"d"
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    args = ["demo", "-o", str(out), "--listings", "40", "--model-path", str(tiny_blip()), "--max-steps", "3",
            "--every", "1", "--limit", "24", "--quiet"]
    r = run_cli(*args, timeout=600, env={**env, "MPLBACKEND": "Agg"})
    assert r.code == 0, r.out[-3000:] + r.err[-3000:]
    return out, r.out


def test_stages_in_order(demo_run):
    _, stdout = demo_run
    heads = re.findall(r"^\[(\d)/8\] (.+?)(?: · .*)?$", stdout, flags=re.M)
    assert [int(i) for i, _ in heads] == list(range(1, 9))
    assert [h for _, h in heads][-1] == "report"
    assert "metadata backend" in stdout                      # no GEMINI_API_KEY: the offline backend


def test_data_files(demo_run):
    out, _ = demo_run
    assert list((out/"abo"/"listings"/"metadata").glob("listings_*.json.gz"))
    cur = pd.read_csv(out/"curated"/"curated.csv")
    vqa = pd.read_csv(out/"vqa"/"vqa.csv")
    parts = {k: pd.read_csv(out/"split"/f"{k}.csv") for k in ("train", "val", "test")}
    assert len(cur) > 0 and len(vqa) >= len(cur)
    assert sum(map(len, parts.values())) == len(vqa)
    assert not set(parts["train"].image_path) & set(parts["test"].image_path)   # split by image
    assert (out/"abo"/"images"/"small"/parts["test"].image_path[0]).exists()


def test_model_runs_and_report(demo_run):
    out, stdout = demo_run
    runs = out/"runs"
    zs, ft = (json.loads((runs/d/"run.json").read_text())["config"] for d in ("eval-blip-zero-shot", "eval-blip-fine-tuned"))
    assert (zs["stage"], ft["stage"]) == ("zero-shot", "fine-tuned")
    assert ft["lora_dir"] == str(runs/"finetune-blip") and zs["model_path"] == ft["model_path"]
    state = json.loads((runs/"finetune-blip"/"trainer_state.json").read_text())
    assert state["global_step"] == 3 and any("eval_loss" in e for e in state["log_history"])
    assert (runs/"finetune-blip"/"adapter_config.json").exists()
    m = json.loads((runs/"eval-blip-fine-tuned"/"metrics.json").read_text())
    assert m["n"] == min(24, len(pd.read_csv(out/"split"/"test.csv"))) and {"exact_match", "bertscore_f1", "cosine"} <= set(m["summary"])
    table = pd.read_csv(out/"report"/"table.csv")
    assert list(table.stage) == ["zero-shot", "fine-tuned"] and table.exact_match.between(0, 1).all()
    for f in ("table.md", "metrics.png", "training.png", "answer_form.png", "question_types.png", "gallery.png"):
        assert (out/"report"/f).exists(), f
    assert "| Exact Match |" in stdout and re.search(r"fine-tuned exact_match [\d.]+ vs zero-shot [\d.]+", stdout)
    info = json.loads((out/"demo.json").read_text())
    assert info["resolved"]["backend"] == "metadata" and info["timings"]["total_s"] > 0
