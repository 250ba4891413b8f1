"The console command as a user runs it: a real subprocess."
import subprocess
from abovqa.cli import COMMANDS
from abovqa.fixtures import run_cli as run

def test_help_lists_every_phase():
    r = run("--help")
    assert r.code == 0
    for cmd in ["sample-abo", "curate", "generate", "split", "evaluate", "finetune", "report", "demo"]:
        assert cmd in r.out and cmd in COMMANDS

def test_unknown_command_is_an_error():
    r = run("no-such-phase")
    assert r.code == 2 and "invalid choice" in r.err

def test_console_script_installed():
    import shutil
    exe = shutil.which("abovqa")
    assert exe, "pip install -e . should put `abovqa` on PATH"
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "finetune" in r.stdout
