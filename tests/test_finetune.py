"""LoRA fine-tuning on the tiny models of every family: the loss falls, only LoRA weights change, the saved adapter
reproduces the trained model, a SIGKILLed run resumes to the same final step with one LoRA wrapping and one wandb
run, and (with the shipped pre-trained tiny BLIP) fine-tuning beats zero-shot on held-out products."""
import json, os, signal, subprocess, sys, textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import TrainerCallback

from abovqa import testing
from abovqa.fixtures import colour_split, run_cli
from abovqa.finetune import finetune, lora_layers, double_wrapped
from abovqa.train_data import VQADataset
from abovqa.models import get_adapter

COLORS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "yellow": (230, 210, 20)}
TINY = {"blip": testing.tiny_blip, "llava": testing.tiny_llava, "qwen": testing.tiny_qwen}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    "A split folder of coloured squares (ABO layout) with a colour question each."
    return colour_split(tmp_path_factory.mktemp("toy"), COLORS, val=16)


class Grab(TrainerCallback):
    "Keeps the trained model the Trainer ends with."
    def on_train_end(self, args, state, control, model=None, **kw): self.model = model


def short_run(family, split, out, callbacks=None, **kw):
    data, images = split
    opts = dict(preset="demo", max_steps=24, lr=5e-3, batch_size=8, every=24, max_eval_samples=8, quant="none",
                set_args={"logging_steps": 4, "gradient_checkpointing": True})
    return finetune(family=family, model_path=str(TINY[family]()), data=data, images=images, out=out, callbacks=callbacks,
                    **{**opts, **kw})


@pytest.mark.parametrize("family", ["blip", "llava", "qwen"])
def test_lora_trains_only_adapter_and_reloads(family, split, tmp_path):
    grab = Grab()
    out = short_run(family, split, tmp_path / "run", callbacks=[grab])
    # the loss goes down
    logs = [h["loss"] for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(logs) >= 4 and sum(logs[-2:]) < sum(logs[:2]), logs
    # run folder: adapter + processor at the top, resolved config, one LoRA wrapping
    info = json.loads((out / "run.json").read_text())
    cfg = info["config"]
    assert (info["status"], cfg["family"], cfg["stage"], cfg["double_wrapped"]) == ("finished", family, "fine-tuned", 0)
    assert cfg["lora"]["r"] == 16 and cfg["lora"]["lora_alpha"] == 32 and info["metrics"]["global_step"] == 24
    assert {"versions", "hardware", "command", "rerun"} <= set(info)
    for f in ("adapter_config.json", "adapter_model.safetensors", "processor_config.json", "README.md"):
        assert (out / f).is_file(), f
    assert "library_name: peft" in (out / "README.md").read_text()
    # only LoRA weights changed: every base weight equals the base model's on disk
    ad = get_adapter(family)
    fresh, proc = ad.load(str(TINY[family]()))
    base = dict(fresh.named_parameters())
    trained = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
               for n, p in grab.model.named_parameters() if "lora_" not in n}
    assert set(trained) == set(base)
    for n, p in trained.items(): assert torch.equal(p.detach().cpu(), base[n].detach()), n
    lora = load_file(out / "adapter_model.safetensors")
    assert lora and all("lora_" in k for k in lora)
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)      # lora_B starts at zero
    assert not any("cls.predictions.decoder" in k for k in lora)                   # BLIP's tied head stays out
    # the saved adapter reproduces the trained model
    reloaded, proc = ad.load(str(TINY[family]()), lora_dir=out)
    assert lora_layers(reloaded) == cfg["lora_layers"] and double_wrapped(reloaded) == 0
    ds = VQADataset(split[0] / "test.csv", split[1])
    rows = [ds[i] for i in range(len(ds))]
    imgs, qs = [r["image"] for r in rows], [r["question"] for r in rows]
    grab.model.eval()
    assert ad.predict(grab.model, proc, imgs, qs) == ad.predict(reloaded, proc, imgs, qs)
    batch = ad.train_batch(proc, imgs, qs, [r["answer"] for r in rows])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).loss, grab.model(**batch).loss)


KILL_SCRIPT = """
import os, signal, sys
from transformers import TrainerCallback
from abovqa.finetune import finetune
class KillAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        if state.global_step >= {kill_at}: os.kill(os.getpid(), signal.SIGKILL)
finetune(**{kwargs}, callbacks=[KillAfterSave()])
"""


@pytest.fixture(scope="module")
def killed_and_resumed(split, tmp_path_factory):
    "A BLIP run SIGKILLed right after its step-8 checkpoint, then rerun with the same command (wandb offline)."
    d = tmp_path_factory.mktemp("resume")
    data, images = split
    kw = dict(family="blip", model_path=str(testing.tiny_blip()), data=str(data), images=str(images), out=str(d / "run"),
              preset="demo", max_steps=16, lr=5e-3, batch_size=8, every=4, max_eval_samples=8,
              set_args={"logging_steps": 2, "gradient_checkpointing": False}, wandb_project="abovqa-test")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(d / "wandb"), "WANDB_SILENT": "true"}
    first = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(kill_at=8, kwargs=repr(kw))], env=env,
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
    state = dict(first=first, ckpts=sorted(p.name for p in (d / "run").glob("checkpoint-*")),
                 run_json=json.loads((d / "run/run.json").read_text()),
                 wandb_id=json.loads((d / "run/wandb_run.json").read_text())["id"])
    rerun = json.loads((d / "run/run.json").read_text())["rerun"].split()[2:]       # the recorded command
    second = run_cli("finetune", *rerun, env=env, cwd=ROOT)
    return dict(state, second=second, dir=d)


def test_sigkill_then_rerun_finishes_at_same_step(killed_and_resumed):
    r = killed_and_resumed
    assert r["first"].returncode == -signal.SIGKILL, r["first"].stderr[-2000:]
    assert r["ckpts"] == ["checkpoint-4", "checkpoint-8"] and r["run_json"]["status"] == "running"
    assert r["second"].code == 0, r["second"].err[-3000:]
    run = r["dir"] / "run"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["config"]["resumed_from"] == "checkpoint-8"
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == 16
    # exactly one LoRA wrapping, the same as before the kill
    assert info["config"]["double_wrapped"] == 0
    assert info["config"]["lora_layers"] == r["run_json"]["config"]["lora_layers"] > 0
    keys = load_file(run / "adapter_model.safetensors").keys()
    assert not any("base_layer" in k for k in keys)
    last = max(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert last.name == "checkpoint-16" and set(keys) == set(load_file(last / "adapter_model.safetensors").keys())
    # training continued from step 8: logged steps after the resume start above 8
    steps = [h["step"] for h in json.loads((run / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert steps == sorted(steps) and steps[-1] == 16 and 10 in steps


def test_wandb_offline_one_run_across_resume(killed_and_resumed):
    r = killed_and_resumed
    runs = sorted((r["dir"] / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2, runs                                   # one folder per session ...
    assert all(p.name.endswith("-" + r["wandb_id"]) for p in runs)  # ... of the same wandb run
    assert all(list(p.glob("*.wandb")) for p in runs)
    assert json.loads((r["dir"] / "run" / "wandb_run.json").read_text())["id"] == r["wandb_id"]


def test_learns_beyond_zero_shot(tmp_path):
    """The demo recipe on the synthetic catalogue: fine-tuned held-out EM well above zero-shot.

    Scored on the questions a picture can answer (colour, shape, pattern, product type): the synthetic drawings do not
    show the material, so material questions (~20 %) stay near chance whatever the model learns."""
    from abovqa.cli import main
    from abovqa.metrics import question_type, score
    from abovqa.sample import make_sample_abo
    base = testing.tiny_blip_base()
    make_sample_abo(tmp_path / "abo", listings=600)
    assert main(["curate", str(tmp_path / "abo"), "-o", str(tmp_path / "cur"), "--quiet"]) == 0
    assert main(["generate", str(tmp_path / "cur/curated.csv"), "--images", str(tmp_path / "abo/images/small"),
                 "-o", str(tmp_path / "gen"), "--backend", "metadata"]) == 0
    assert main(["split", str(tmp_path / "gen/vqa.csv"), "-o", str(tmp_path / "split")]) == 0
    run = finetune(family="blip", model_path=str(base), data=tmp_path / "split", images=tmp_path / "abo", out=tmp_path / "run", preset="demo",
                   max_steps=600, every=600, max_eval_samples=64)
    ds = VQADataset(tmp_path / "split/test.csv", tmp_path / "abo")
    rows = [ds[i] for i in range(len(ds)) if question_type(ds.df.question.iloc[i]) != "material"]
    assert len(rows) > 100
    imgs, qs, refs = [r["image"] for r in rows], [r["question"] for r in rows], [r["answer"] for r in rows]
    ad, em = get_adapter("blip"), {}
    for name, adapter in (("zero-shot", None), ("fine-tuned", run)):
        m, p = ad.load(str(base), lora_dir=adapter)
        em[name] = score(ad.predict(m, p, imgs, qs), refs, metrics=["exact_match"])[0]["exact_match"]
    assert em["fine-tuned"] >= em["zero-shot"] + 0.25, em


def test_hub_checkpoint_fetch_on_a_repo_that_does_not_exist_yet(tmp_path, monkeypatch):
    "The first --hub-checkpoints session: the repo is created later by the Trainer, so 'not found' means 'no checkpoint'."
    import httpx2, huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError
    from abovqa.checkpoints import fetch_hub_checkpoint
    def not_found(repo, **kw):
        req = httpx2.Request("GET", f"https://huggingface.co/api/models/{repo}")
        raise RepositoryNotFoundError("404 Repository Not Found", response=httpx2.Response(404, request=req))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_found)
    assert fetch_hub_checkpoint("me/new-repo", tmp_path) is None


def test_two_process_ddp_llava_trains_and_resumes(split, tmp_path):
    """`--gpus 2` on two CPU (gloo) processes with the tiny LLaVA: its last ViT layer's LoRA weights get no gradient
    (features come from layer -2), which DDP must tolerate; the rerun resumes on both ranks from the same checkpoint."""
    data, images = split
    out = tmp_path / "run"
    kw = dict(preset="demo", max_steps=4, batch_size=2, every=2, max_eval_samples=4, quant="none", gpus=2,
              set_args={"logging_steps": 1, "gradient_checkpointing": True})
    finetune(family="llava", model_path=str(testing.tiny_llava()), data=data, images=images, out=out, **kw)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert json.loads((out / "run.json").read_text())["config"]["world"] == 2
    assert {p.name for p in (out / "checkpoint-4").glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    (out / "checkpoint-6").mkdir()                                       # a save killed half-way
    finetune(family="llava", model_path=str(testing.tiny_llava()), data=data, images=images, out=out, **{**kw, "max_steps": 6})
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["resumed_from"] == "checkpoint-4" and info["metrics"]["global_step"] == 6
    assert (out / "_incomplete-checkpoint-6").is_dir() and (out / "checkpoint-6" / "trainer_state.json").is_file()
