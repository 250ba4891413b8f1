"""Fine-tuning on a T4 and under faults: the memory plan (Qwen-7B fits a T4 only with the fp16 vision tower; runs that
cannot fit are refused before any load), NaN/inf losses stop the run with one line, a broken newest checkpoint is set
aside and the run resumes from the previous one, and the best checkpoint survives a new session through the Hub
(a local folder stands in for it)."""
import concurrent.futures, fnmatch, json, shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import TrainerCallback

from abovqa import cli, testing
from abovqa.fixtures import colour_split
from abovqa.core import UserError
from abovqa.finetune import finetune
from abovqa.memory import T4_GIB, check_plan, memory_plan

QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"
TINY = {"blip": testing.tiny_blip, "llava": testing.tiny_llava, "qwen": testing.tiny_qwen}
COLORS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "yellow": (230, 210, 20)}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    "A split folder of coloured squares (ABO layout) with a colour question each."
    return colour_split(tmp_path_factory.mktemp("toy"), COLORS, val=8)


def run(split, out, family="blip", callbacks=None, **kw):
    data, images = split
    opts = dict(preset="demo", max_steps=12, lr=5e-3, batch_size=8, every=4, max_eval_samples=8, quant="none",
                set_args={"logging_steps": 4})
    return finetune(family=family, model_path=str(TINY[family]()), data=data, images=images, out=out, callbacks=callbacks,
                    **{**opts, **kw})


# ---- memory plan ----

def test_qwen_7b_8bit_fits_a_t4_with_the_fp16_vision_tower_and_the_old_fp32_choice_is_refused():
    new = memory_plan("qwen", QWEN, "8bit", 8, T4_GIB)
    old = memory_plan("qwen", QWEN, "8bit", 8, T4_GIB, vision="fp32")
    rows = {r["component"]: r for r in new["rows"]}
    assert rows["language model"]["dtype"] == "int8" and 6.0 < rows["language model"]["gib"] < 6.2
    assert rows["vision tower"]["dtype"] == "float16" and 1.2 < rows["vision tower"]["gib"] < 1.3
    assert {r["dtype"] for r in old["rows"] if r["component"] == "vision tower"} == {"float32"}
    assert new["fits"] and new["margin_gib"] > 0.5, new["margin_gib"]
    assert old["fits"] is False and old["total_gib"] - new["total_gib"] > 1.2
    with pytest.raises(UserError, match=r"--vision fp16.*--quant 4bit"): check_plan(old)


@pytest.mark.parametrize("family", ["blip", "llava", "qwen"])
def test_plan_computes_for_the_tiny_models(family):
    plan = memory_plan(family, str(TINY[family]()), None, 4, None)
    assert plan["fits"] is None and plan["total_gib"] > 0.5          # the CUDA context alone is 0.5
    comps = {r["component"] for r in plan["rows"]}
    assert {"vision tower", "LoRA weights + grads", "Adam states"} <= comps


def test_a_tiny_budget_is_refused_before_training(split, tmp_path, capsys):
    out, (data, images), model = tmp_path / "run", split, str(TINY["blip"]())
    capsys.readouterr()
    rc = cli.main(["finetune", "--family", "blip", "--model-path", model, "--data", str(data),
                   "--images", str(images), "-o", str(out), "--gpu-memory", "0.05", "--max-steps", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "Traceback" not in err[0], err
    assert "budget is 0.1 GiB" in err[0] and "--batch-size 4" in err[0] and "--gpu-memory" in err[0]
    assert not list(out.glob("checkpoint-*")) and not (out / "run.json").exists()


# ---- fp16 overflow ----

class PoisonInputs(TrainerCallback):
    "From step `at` on, every training forward sees NaN pixels (a stand-in for an fp16 overflow)."
    def __init__(self, at): self.at, self.step = at, 0
    def on_step_begin(self, args, state, control, **kw): self.step = state.global_step
    def on_train_begin(self, args, state, control, model=None, **kw):
        def pre(module, a, k):
            if module.training and self.step >= self.at:
                k = {**k, "pixel_values": torch.full_like(k["pixel_values"], float("nan"))}
            return a, k
        model.register_forward_pre_hook(pre, with_kwargs=True)


def test_nan_loss_stops_the_run_with_one_line(split, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"step 3: the loss is NaN/inf.*fp16 overflow.*lower --lr") as e:
        run(split, out, callbacks=[PoisonInputs(at=2)])
    assert "\n" not in str(e.value) and e.value.code == 1
    assert not list(out.glob("checkpoint-*"))                         # nothing saved after the NaN


# ---- checkpoint faults ----

class KillAfterSave(TrainerCallback):
    def __init__(self, step): self.step = step
    def on_save(self, args, state, control, **kw):
        if state.global_step >= self.step: raise KeyboardInterrupt("killed")


def test_truncated_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_previous(split, tmp_path, capfd):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt): run(split, out, callbacks=[KillAfterSave(8)])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    f = out / "checkpoint-8" / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    capfd.readouterr()
    run(split, out)
    err = capfd.readouterr().err
    assert "checkpoint-8 cannot be resumed from: adapter_model.safetensors is unreadable" in err
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["config"]["resumed_from"] == "checkpoint-4"
    assert info["metrics"]["global_step"] == 12 and (out / "_bad-checkpoint-8").is_dir()


# ---- best checkpoint across sessions ----

class FakeHub:
    "A local folder standing in for the Hub: create_repo, upload_folder/upload_file and snapshot_download."
    def __init__(self, root): self.root = Path(root)
    def repo(self, repo_id): return self.root / repo_id.replace("/", "--")
    def create_repo(self, repo_id, **kw):
        self.repo(repo_id).mkdir(parents=True, exist_ok=True)
        return type("RepoUrl", (), {"repo_id": repo_id})()
    def upload_folder(self, repo_id, folder_path, path_in_repo=None, ignore_patterns=None, allow_patterns=None,
                      delete_patterns=None, run_as_future=False, **kw):
        dst = self.repo(repo_id) / (path_in_repo or "")
        if delete_patterns and path_in_repo: shutil.rmtree(dst, ignore_errors=True)
        for f in Path(folder_path).rglob("*"):
            rel = f.relative_to(folder_path).as_posix()
            if not f.is_file() or any(fnmatch.fnmatch(rel, p) for p in ignore_patterns or []): continue
            (dst / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy(f, dst / rel)
        if not run_as_future: return "commit"
        fut = concurrent.futures.Future(); fut.set_result("commit"); return fut
    def upload_file(self, path_or_fileobj, path_in_repo, repo_id, **kw):
        (self.repo(repo_id) / path_in_repo).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path_or_fileobj, self.repo(repo_id) / path_in_repo)
    def snapshot_download(self, repo_id, allow_patterns=None, local_dir=None, **kw):
        import httpx2
        from huggingface_hub.errors import RepositoryNotFoundError
        src = self.repo(repo_id)
        if not src.is_dir():
            req = httpx2.Request("GET", f"https://huggingface.co/api/models/{repo_id}")
            raise RepositoryNotFoundError("404 Repository Not Found", response=httpx2.Response(404, request=req))
        for f in src.rglob("*"):
            rel = f.relative_to(src).as_posix()
            if f.is_file() and any(fnmatch.fnmatch(rel, p) for p in allow_patterns or ["*"]):
                (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy(f, Path(local_dir) / rel)
        return str(local_dir)


class ScriptedEval(TrainerCallback):
    "Replaces eval_loss by a scripted value per step, so that the best step is known."
    def __init__(self, losses): self.losses = losses
    def on_evaluate(self, args, state, control, metrics=None, **kw):
        metrics["eval_loss"] = self.losses[state.global_step]


@pytest.mark.parametrize("max_steps", [24, 12])   # 12: killed after the last save, the new session only finishes up
def test_best_checkpoint_survives_a_new_session_through_the_hub(split, tmp_path, monkeypatch, max_steps):
    import huggingface_hub, transformers.trainer
    hub = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: hub)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None, **kw: hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    losses = {4: 0.9, 8: 0.3, 12: 0.6, 16: 0.5, 20: 0.45, 24: 0.4}       # best at step 8, in session 1
    kw = dict(max_steps=max_steps, push_to_hub="me/abovqa-blip", hub_checkpoints=True)
    s1 = tmp_path / "session1"
    with pytest.raises(KeyboardInterrupt): run(split, s1, callbacks=[ScriptedEval(losses), KillAfterSave(12)], **kw)
    repo = hub.repo("me/abovqa-blip")
    assert json.loads((repo / "best_checkpoint.json").read_text())["step"] == 8
    assert (repo / "best-checkpoint" / "adapter_model.safetensors").is_file()
    assert not (repo / "best-checkpoint" / "optimizer.pt").exists()
    best = load_file(s1 / "checkpoint-8" / "adapter_model.safetensors")
    shutil.rmtree(s1)                                                     # session 1's machine is gone
    s2 = tmp_path / "session2"                                            # a fresh machine: empty run folder
    run(split, s2, callbacks=[ScriptedEval(losses)], **kw)
    info = json.loads((s2 / "run.json").read_text())
    assert info["config"]["resumed_from"] == "checkpoint-12"
    assert info["config"]["best_checkpoint"] == str(s2 / "checkpoint-8") and info["metrics"]["best_eval_loss"] == 0.3
    final = load_file(s2 / "adapter_model.safetensors")
    assert final.keys() == best.keys() and all(torch.equal(final[k], best[k]) for k in best)
    last = load_file(s2 / f"checkpoint-{max_steps}" / "adapter_model.safetensors")
    assert not all(torch.equal(last[k], best[k]) for k in best)         # the last one differs: the best was chosen
    assert json.loads((s2 / "best_checkpoint.json").read_text())["step"] == 8
