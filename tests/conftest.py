"Shared pytest setup: offline environment and single-threaded torch (see tests/run.sh)."
import os
for k, v in dict(HF_HUB_OFFLINE="1", HF_EVALUATE_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                 WANDB_MODE="offline", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg").items():
    os.environ.setdefault(k, v)

import pytest

def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test (minutes); run with --runslow or ABOVQA_SLOW=1")

def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("ABOVQA_SLOW") == "1": return
    skip = pytest.mark.skip(reason="slow: run with --runslow or ABOVQA_SLOW=1")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)

# ------------------------------------------------------------------ running commands in-process (tests/test_bad_inputs.py)
import re
from dataclasses import dataclass

@dataclass
class CliResult:
    code: int   # exit status
    out: str    # stdout
    err: str    # stderr

    def messages(self, prog: str) -> list[str]:
        "The error lines `prog` printed (`prog: ...`), warnings and argparse's usage lines left out."
        return [l for l in self.err.splitlines() if l.startswith(f"{prog}: ") and not l.startswith(f"{prog}: warning")]

@pytest.fixture
def run_cli(capsys):
    "Run `abovqa ARGS...` in this process through `abovqa.cli.main`; returns a `CliResult` (exit code, stdout, stderr)."
    from abovqa.cli import main
    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)
    return run


def colour_split(root, colors: dict, train: int = 32, val: int = 16, test: int = 8):
    "A split folder of coloured squares (ABO layout, images/small) with a colour question each: (split dir, root)."
    import pandas as pd
    from PIL import Image
    for name, n in dict(train=train, val=val, test=test).items():
        rows = []
        for i in range(n):
            c = list(colors)[i % len(colors)]
            rel = f"{name[:2]}/{name}{i}.jpg"
            (root / "images/small" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 40), colors[c]).save(root / "images/small" / rel)
            rows.append(dict(image_path=rel, question="what color is the product?", answer=c, image_id=f"{name}{i}"))
        (root / "split").mkdir(exist_ok=True)
        pd.DataFrame(rows).to_csv(root / "split" / f"{name}.csv", index=False)
    return root / "split", root
