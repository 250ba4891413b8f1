"`abovqa report` over run folders written in the formats evaluate and finetune produce (a real Trainer's trainer_state.json)."
import json, os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from abovqa.fixtures import run_cli
from abovqa.report import (build_report, find_runs, gallery, load_predictions, load_runs, model_label, plot_answer_forms,
                           plot_metrics, plot_question_types, plot_training, results_table, run_stage, training_log)

METRICS = dict(exact_match=0.41, token_f1=0.42, rouge_l=0.44, bertscore_f1=0.97, bartscore=-4.8, cosine=0.69,
               normalizer="short", n=3, n_empty_predictions=0, bertscore_model="roberta-large", bertscore_num_layers=17,
               bartscore_p=-4.7)   # abovqa.metrics.score's summary: metrics plus counts and settings


def write_eval(d, model, stage, summary, rows, **cfg):
    d.mkdir(parents=True, exist_ok=True)
    (d/"run.json").write_text(json.dumps(dict(config=dict(model=model, stage=stage, **cfg), versions={}, hardware={},
                                              time="2026-11-29T10:00:00+00:00", command="abovqa evaluate")))
    (d/"metrics.json").write_text(json.dumps(dict(
        normalizer="short", n=len(rows), summary=summary,
        by_question_type={"color": dict(n=2, exact_match=summary["exact_match"]), "yes/no": dict(n=1, exact_match=1.0)},
        answer_form=dict(n=len(rows), single_word_share=1 - 1/len(rows), multi_word_share=1/len(rows), empty_share=0.0,
                         mean_words=1.3, wrong_share=0.3, top_wrong=[["blue", 1]]))))
    pd.DataFrame(rows, columns=["image_path", "question", "answer", "raw", "prediction", "correct"]).to_csv(
        d/"predictions.csv", index=False)


def real_trainer_state(out):
    "Train a 2-parameter model for 8 steps with the HF Trainer, evaluating every 2, and save its state."
    import torch
    from transformers import Trainer, TrainingArguments

    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__(); self.w = torch.nn.Linear(1, 1)
        def forward(self, x, labels):
            return dict(loss=torch.nn.functional.mse_loss(self.w(x), labels))

    data = [dict(x=torch.tensor([float(i)]), labels=torch.tensor([2.0*i])) for i in range(8)]
    args = TrainingArguments(output_dir=str(out), max_steps=8, per_device_train_batch_size=2, learning_rate=0.05,
                             logging_steps=1, eval_strategy="steps", eval_steps=2, save_strategy="steps",
                             save_steps=4, report_to="none", use_cpu=True, lr_scheduler_type="linear",
                             disable_tqdm=True)
    t = Trainer(model=Lin(), args=args, train_dataset=data, eval_dataset=data[:4])
    t.train(); t.save_state()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    imgs = root/"images"; (imgs/"ab").mkdir(parents=True)
    for c in ["red", "blue"]: Image.new("RGB", (32, 32), c).save(imgs/"ab"/f"{c}.jpg")
    rows_zs = [("ab/red.jpg", "What color is the product?", "red", "it is blue", "blue", False),
               ("ab/blue.jpg", "What color is the product?", "blue", "blue", "blue", True),
               ("ab/red.jpg", "Is this a mug?", "yes", "yes", "yes", True)]
    rows_ft = [(p, q, a, a, a, True) for p, q, a, *_ in rows_zs]
    write_eval(root/"eval"/"blip-zs", "Salesforce/blip-vqa-base", "zero-shot", METRICS, rows_zs)
    write_eval(root/"eval"/"blip-ft", "Salesforce/blip-vqa-base", "fine-tuned",
               {**METRICS, "exact_match": 0.76, "bartscore": -3.1}, rows_ft, adapter="runs/ft-blip")
    ft = root/"kaggle"/"nested"/"ft-blip"
    real_trainer_state(ft)
    (ft/"run.json").write_text(json.dumps(dict(config=dict(model="Salesforce/blip-vqa-base", stage="fine-tuned"))))
    # a run whose trainer_state.json exists only in its checkpoints (killed before the end)
    ck = root/"ft-llava"/"checkpoint-4"; ck.mkdir(parents=True)
    (ck/"trainer_state.json").write_text((ft/"checkpoint-4"/"trainer_state.json").read_text())
    (root/"ft-llava"/"run.json").write_text(json.dumps(dict(config=dict(model="org/llava-1.5-7b-hf"))))
    (root/"not-a-run").mkdir(); (root/"not-a-run"/"run.json").write_text("{}")
    return root


def test_find_runs_recursive(runs):
    names = [p.name for p in find_runs(runs)]
    assert sorted(names) == ["blip-ft", "blip-zs", "ft-blip", "ft-llava"]   # checkpoints and not-a-run excluded


def test_table_matches_metrics(runs):
    t = results_table(load_runs(runs))
    assert list(t.model) == ["blip-vqa-base"]*2 and list(t.stage) == ["zero-shot", "fine-tuned"]
    assert t.exact_match.tolist() == [0.41, 0.76] and t.bartscore.tolist() == [-4.8, -3.1]
    assert set(t.normalizer) == {"short"} and t.n.tolist() == [3, 3]
    assert "bartscore_p" in t and "bertscore_num_layers" not in t and "n_empty_predictions" not in t


def test_real_trainer_log(runs):
    r = {r["name"]: r for r in load_runs(runs)}
    tl = training_log(r["ft-blip"]["log_history"])
    assert tl.index.tolist() == list(range(1, 9))
    assert tl.loss.notna().all() and tl.eval_loss.notna().sum() == 4
    assert tl.learning_rate.is_monotonic_decreasing and tl.loss.iloc[-1] < tl.loss.iloc[0]
    assert training_log(r["ft-llava"]["log_history"]).index.max() == 4   # read from checkpoint-4


def test_cli_writes_table_and_figures(runs, tmp_path):
    out = tmp_path/"report"
    r = run_cli("report", runs, "-o", out, "--images-root", runs/"images", env={**os.environ, "MPLBACKEND": "Agg"})
    assert r.code == 0, r.err
    assert "| Exact Match |" in r.out and "0.7600" in r.out
    for f in ["table.csv", "table.md", "metrics.png", "training.png", "answer_form.png", "question_types.png",
              "gallery.png"]:
        assert (out/f).exists(), f
    for f in out.glob("*.png"):
        w, h = Image.open(f).size
        assert w > 400 and h > 200, f
    csv = pd.read_csv(out/"table.csv")
    assert csv.columns[:8].tolist() == ["model", "stage", "exact_match", "token_f1", "rouge_l", "bertscore_f1",
                                        "bartscore", "cosine"]
    assert "`short` normaliser" in (out/"table.md").read_text()


def test_gallery_marks_and_filters(runs):
    import matplotlib; matplotlib.use("Agg")
    preds = load_predictions(load_runs(runs))
    assert len(preds) == 6 and preds.correct.sum() == 5
    fig = gallery(preds, runs/"images", wrong="any")
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 1                      # only the red-product colour question had a wrong answer
    texts = [t.get_text() for t in shown[0].texts]
    assert any(t.startswith("✗ blip-vqa-base ZS: blue") for t in texts)
    assert any(t.startswith("✓ blip-vqa-base FT: red") for t in texts)
    assert len([a for a in gallery(preds, runs/"images", question_type="yes/no").axes if a.images]) == 1


def test_errors_name_the_file(tmp_path):
    d = tmp_path/"r"; d.mkdir()
    (d/"run.json").write_text("{}"); (d/"metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="metrics.json"): build_report(tmp_path, tmp_path/"out")
    with pytest.raises(FileNotFoundError, match="no run folders"): build_report(tmp_path/"out", tmp_path/"o2")
    (d/"metrics.json").write_text("{}"); (d/"predictions.csv").write_text("image_path,question\nx.jpg,q\n")
    with pytest.raises(ValueError, match="predictions.csv: missing columns"): load_predictions(load_runs(tmp_path))


def test_config_keys_new_and_old(tmp_path):
    "run.json's `family` / `lora_dir` (issue #14) and the older `model` / `adapter` report the same."
    rows = [("a.jpg", "What color is the product?", "red", "red", "red", True)]
    for name, keys in [("old", dict(model="Salesforce/blip-vqa-base", adapter="runs/ft-blip")),
                       ("new", dict(family="Salesforce/blip-vqa-base", lora_dir="runs/ft-blip"))]:
        write_eval(tmp_path/name, None, None, METRICS, rows)
        (tmp_path/name/"run.json").write_text(json.dumps(dict(config=keys)))   # no stage: read from the LoRA folder
    old, new = ({k: r[k] for k in ("model", "stage")} for r in load_runs(tmp_path))
    assert old == new == dict(model="blip-vqa-base", stage="fine-tuned")
    assert model_label(dict(family="blip", model="x")) == "blip" and run_stage(dict(family="blip", lora_dir=None)) == "zero-shot"


def test_plots_close_their_figures(runs):
    "Each plot function returns a closed figure (Jupyter shows it once) that still saves."
    import io
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.close("all")
    rs = load_runs(runs)
    figs = [plot_metrics(results_table(rs)), plot_training(rs), plot_answer_forms(rs), plot_question_types(rs),
            plot_answer_forms([]), plot_question_types([]), gallery(load_predictions(rs), runs/"images")]
    assert plt.get_fignums() == []
    for f in figs: f.savefig(io.BytesIO(), format="png")
