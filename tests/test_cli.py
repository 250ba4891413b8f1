"The console command as a user runs it: a real subprocess."
import subprocess, sys
from abovqa.cli import COMMANDS

def run(*args):
    return subprocess.run([sys.executable, "-c", "import sys; from abovqa.cli import main; sys.exit(main())", *args],
                          capture_output=True, text=True, timeout=120)

def test_help_lists_every_phase():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ["sample-abo", "curate", "generate", "split", "evaluate", "finetune", "report", "demo"]:
        assert cmd in r.stdout and cmd in COMMANDS

def test_unknown_command_is_an_error():
    r = run("no-such-phase")
    assert r.returncode == 2 and "invalid choice" in r.stderr

def test_console_script_installed():
    import shutil
    exe = shutil.which("abovqa")
    assert exe, "pip install -e . should put `abovqa` on PATH"
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "finetune" in r.stdout
