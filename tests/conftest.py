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
@pytest.fixture
def run_cli(capsys):
    "Run `abovqa ARGS...` in this process through `abovqa.cli.main`; returns a `CliResult` (exit code, stdout, stderr)."
    from abovqa.cli import main
    from abovqa.fixtures import CliResult
    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)
    return run
