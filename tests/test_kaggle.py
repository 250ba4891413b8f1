"The Kaggle notebooks: valid, thin (imports, configuration, one abovqa call per phase), and their metadata valid."
import argparse, ast, json, re, sys, types
from pathlib import Path

import nbformat
import pytest

KAGGLE = Path(__file__).parents[1]/"kaggle"
JOBS = ["generate-dataset", "baseline-eval", "finetune-blip", "finetune-llava", "finetune-qwen"]
SECRETS = {"GEMINI_API_KEY", "WANDB_API_KEY", "HF_TOKEN"}
FORBIDDEN = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.AsyncFor, ast.While, ast.If, ast.Try,
             ast.With, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.IfExp)
BOOL_FIELDS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")


def meta(job): return json.loads((KAGGLE/job/"kernel-metadata.json").read_text())
def notebook(job): return nbformat.read(KAGGLE/job/meta(job)["code_file"], as_version=4)
def python_of(cell): return "\n".join(l for l in cell.source.splitlines() if not l.lstrip().startswith(("%", "!")))


def kind(cell):
    "'pip', 'import', 'config' or 'call' for a thin cell; raises AssertionError otherwise."
    src = cell.source.strip()
    if src.startswith("%pip install"):
        assert "\n" not in src, "one pip line"; return "pip"
    tree = ast.parse(src)
    bad = [type(n).__name__ for n in ast.walk(tree) if isinstance(n, FORBIDDEN)]
    assert not bad, f"logic in a Kaggle notebook: {bad}\n{src}"
    if all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in tree.body): return "import"
    if all(isinstance(s, ast.Assign) for s in tree.body): return "config"
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert), f"one `assert main([...]) == 0` per cell:\n{src}"
    call = tree.body[0].test.left
    assert isinstance(call, ast.Call) and getattr(call.func, "id", None) == "main", src
    return "call"


def test_all_jobs_present():
    assert sorted(p.name for p in KAGGLE.iterdir() if p.is_dir()) == sorted(JOBS)
    assert (KAGGLE/"README.md").exists()


@pytest.mark.parametrize("job", JOBS)
def test_metadata_valid(job):
    m = meta(job)
    for f in ("id", "title", "code_file", "language", "kernel_type"): assert m.get(f), f
    owner, slug = m["id"].split("/")
    assert re.fullmatch(r"[a-z0-9-]+", owner) and slug == m["title"].lower().replace(" ", "-")  # push warns otherwise
    assert len(m["title"]) >= 5 and slug.endswith(job)
    assert m["code_file"] == f"{job}.ipynb" and (KAGGLE/job/m["code_file"]).exists()
    assert (m["language"], m["kernel_type"]) == ("python", "notebook")
    for f in BOOL_FIELDS: assert isinstance(m[f], bool), f
    assert m["enable_internet"] is True and m["enable_tpu"] is False      # secrets and pip need internet
    assert m["enable_gpu"] == (job != "generate-dataset")
    if m["enable_gpu"]: assert m["machine_shape"] == "NvidiaTeslaT4"      # = GPU T4 x2 (kaggle-cli PR #1198)
    assert "docker_image" not in m                                        # a pinned image overrides the accelerator
    assert m["dataset_sources"] == ["abovqa/abovqa-vqa"]                  # ABO comes from download-abo; attaching it is optional
    assert m["competition_sources"] == [] and m["kernel_sources"] == []
    for s in m["dataset_sources"]: assert re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+", s)


@pytest.mark.parametrize("job", JOBS)
def test_notebook_thin(job):
    nb = notebook(job)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# abovqa")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") for c in code)
    kinds = [kind(c) for c in code]
    assert kinds[0] == "pip" and "git+https://github.com/abovqa/abovqa" in code[0].source
    assert kinds[1] == "import" and set(kinds[2:kinds.index("call")]) == {"config"}
    assert kinds[kinds.index("call"):] == ["call"]*kinds.count("call") and 1 <= kinds.count("call") <= 5
    assert len(code) <= 9 and sum(len(c.source.splitlines()) for c in code) <= 30
    nbk = nb.metadata["kaggle"]
    assert nbk["isGpuEnabled"] == meta(job)["enable_gpu"] and nbk["isInternetEnabled"] is True


def test_pip_url_matches_settings():
    import configparser
    cfg = configparser.ConfigParser(); cfg.read(KAGGLE.parent/"settings.ini")
    for job in JOBS: assert cfg["DEFAULT"]["git_url"] in notebook(job).cells[1].source


class _Parsed(BaseException): pass   # not an Exception: cli.main catches those


@pytest.fixture(params=["downloaded", "attached"])
def run_notebook(tmp_path, monkeypatch, request):
    "Execute a notebook's Python (pip skipped) with fake inputs, ABO attached or not; return the secrets read and the argv of each call."
    import abovqa.cli, abovqa.core, abovqa.download
    handles = ["abovqa/abovqa-vqa"] + (["abovqa/abo-small"] if request.param == "attached" else [])
    inputs = {h: tmp_path/"input"/h.split("/")[1] for h in handles}
    for p in inputs.values(): p.mkdir(parents=True)
    monkeypatch.setattr(abovqa.download, "KAGGLE_INPUT", tmp_path/"input")
    monkeypatch.setattr(abovqa.download, "KAGGLE_TEMP", tmp_path/"temp")
    (inputs["abovqa/abovqa-vqa"]/"README.md").write_text("previous session")
    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=lambda h: str(inputs[h])))
    monkeypatch.setenv("ABOVQA_HOME", str(tmp_path/"working"))
    asked = []
    monkeypatch.setattr(abovqa.core, "get_secret", lambda name, required=False: asked.append((name, required)) or "k3y")
    calls = []
    monkeypatch.setattr(abovqa.cli, "main", lambda argv: calls.append(list(argv)) or 0)
    def run(job):
        ns = {}
        for c in notebook(job).cells:
            if c.cell_type == "code": exec(python_of(c), ns)
        return asked, calls, tmp_path
    return run


@pytest.mark.parametrize("job", JOBS)
def test_notebook_runs_its_commands(job, run_notebook):
    asked, calls, tmp = run_notebook(job)
    assert all(required for _, required in asked)
    names = {n for n, _ in asked}
    assert names <= SECRETS and names
    assert ("GEMINI_API_KEY" in names) == (job == "generate-dataset")
    cmds = [c[0] for c in calls]
    expected = {"generate-dataset": ["curate", "generate", "split"], "baseline-eval": ["evaluate"]*4}
    assert cmds == ["download-abo"] + expected.get(job, ["finetune", "evaluate"])
    abo = calls[0][1]                                                      # attached input, else scratch space that is no output
    assert abo == str(tmp/("input/abo-small" if (tmp/"input/abo-small").exists() else "temp/abo"))
    for argv in calls[1:]:
        assert not any(a.startswith(str(tmp/"working")) and "images" in a for a in argv), argv   # images never under outputs
        if "--images" in argv: assert argv[argv.index("--images") + 1].startswith(abo)
    if job != "generate-dataset":                                           # only the images the dataset uses
        table = calls[0][calls[0].index("--images-for") + 1]
        assert table.startswith(str(tmp/"input/abovqa-vqa")) and calls[0][calls[0].index("--what") + 1] == "images-small"
    for argv in calls: assert all(isinstance(a, str) for a in argv), argv
    if job == "generate-dataset":
        assert (tmp/"working"/"data"/"README.md").exists()                 # previous output copied in: resume
    if job.startswith("finetune"):
        ft = calls[1]
        assert ft[ft.index("--gpus") + 1] == "2" and "--hub-checkpoints" in ft and "--push-to-hub" in ft
        assert calls[2][calls[2].index("--lora-dir") + 1] == ft[ft.index("-o") + 1]  # evaluates what it trained
        assert "WANDB_API_KEY" in names and "HF_TOKEN" in names


def _parse_only(argv, monkeypatch):
    "Run `abovqa.cli.main(argv)` up to the end of argument parsing; return the parsed namespace."
    import abovqa.cli
    orig = argparse.ArgumentParser.parse_args
    def parse(self, args=None, namespace=None):
        ns = orig(self, args, namespace)
        if self.prog.startswith("abovqa "): raise _Parsed(ns)
        return ns
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    try: rc = abovqa.cli.main(argv)
    except _Parsed as e: return e.args[0]
    pytest.fail(f"{argv[0]} returned {rc} before parsing its arguments")


@pytest.mark.parametrize("job", JOBS)
def test_commands_accepted_by_the_real_parsers(job, run_notebook, monkeypatch):
    _, calls, _ = run_notebook(job)
    monkeypatch.undo()
    for argv in calls:
        try: _parse_only(argv, monkeypatch)
        except SystemExit as e: pytest.fail(f"`abovqa {' '.join(argv)}` rejected by its parser ({e})")
