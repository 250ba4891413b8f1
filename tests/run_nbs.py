"""Execute notebooks in place, saving their outputs for the docs site; cells flagged slow, cuda, notest or eval: false are skipped.

Usage (offline env as in tests/run.sh): TQDM_DISABLE=1 PYTHONWARNINGS=ignore python tests/run_nbs.py nbs/*.ipynb && nbdev_clean"""
import os, re, sys
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
SKIP = {"slow", "cuda", "notest"}
def flags(src):
    out = {}
    for l in src.splitlines():
        m = re.match(r"\s*#\|\s*(.*)", l)
        if m:
            parts = m.group(1).split()
            if parts: out[parts[0]] = parts[1:]
    return out
def preproc(cell):
    if cell.cell_type != "code": return True
    if "nbdev_export(" in cell.source: return True
    d = flags(cell.source)
    if d.get("eval:", [""])[0].lower() == "false": return True
    return bool(SKIP & d.keys())
for fn in map(Path, sys.argv[1:]):
    nb = read_nb(fn)
    k = CaptureShell(fn)
    cwd = os.getcwd(); os.chdir(fn.parent)
    try: k.run_all(nb, exc_stop=True, preproc=preproc)
    finally: os.chdir(cwd)
    if k.exc: print("FAILED", fn, k.exc); continue
    write_nb(nb, fn); print("ok", fn)
