"""Benchmark `abovqa curate` against the floor: bare gunzip + json.loads of every listing line, one process.

Builds (once, cached under bench/.cache/) a full-size synthetic catalogue with `abovqa.sample.make_sample_abo`
(147,702 listings in 16 files, 398,212 image rows, no JPEGs), then, in one run and `--repeat` times over:
  (a) the floor: `for line in gzip.open(f, "rb"): json.loads(line)` over all 16 files, single process;
  (b) `abovqa curate ROOT -o OUT --workers W` in a subprocess, for each W in --workers.
Target (issue #16.3): the whole command (b) <= 1.3 x (a) wall time, peak memory <= 2 GB. The machine is shared, so every figure is a ratio within
one round; CPU seconds (less sensitive to other people's load) are reported beside wall seconds.

    python bench/curate.py                    # 3 rounds, workers 1 and 2
    python bench/curate.py --repeat 5 --workers 1 2 4
    git archive OLD abovqa | tar -x -C /tmp/old && python bench/curate.py --baseline /tmp/old   # before/after in one run

Figures (2026-11-29, `--repeat 3 --workers 1 2 --baseline` = the package before lazy imports and read-ahead; the 2-core
machine was busy, load average 5.7-6.3, with the floor's wall time 2-5x its CPU time). Each figure is the whole
command's wall time over the floor's, median of the three rounds:
    W=2 (default): 1.42x (before: 1.90x); quietest round 0.98x (before: 1.90x)
    W=1:           1.67x (before: 1.77x)
    imports: 0.2-0.8 s wall (before: 1.0-5.3 s); `import abovqa.curate` 0.35-0.42 s CPU (before: 1.28-1.44 s)
    peak memory, main + workers: 701 MB with W=1, 460 MB with W=2 (before: 930 MB; workers now fork without pandas)
    CPU over the floor's CPU: 1.8-2.2x (W=1), 2.1-2.4x (W=2): the limit whenever no core is free
"""
import argparse, gzip, json, os, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import orjson
sys.path.insert(0, str(Path(__file__).parents[1]))

CACHE = Path(__file__).parent/".cache"
CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import abovqa.curate as C
t1 = time.perf_counter()
stages = {}
def timed(name, fn):
    def run(*a, **k):
        t = time.perf_counter()
        try: return fn(*a, **k)
        finally: stages[name] = stages.get(name, 0) + time.perf_counter() - t
    return run
for name in ("scan_all", "qualifying", "shuffle_unique", "sample_images", "decode_chosen", "curated_table", "write_outputs"):
    if hasattr(C, name): setattr(C, name, timed(name, getattr(C, name)))
rc = C.curate_cli(sys.argv[1:])
t2 = time.perf_counter()
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps(dict(rc=rc, import_s=t1 - t0, curate_s=t2 - t1, main_rss_mb=me.ru_maxrss/1024, worker_rss_mb=kids.ru_maxrss/1024,
                      cpu_s=me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, stages=stages)))
"""

def catalogue(listings: int, seed: int) -> Path:
    "The cached synthetic ABO root (built on first use)."
    root = CACHE/f"abo-{listings}-seed{seed}"
    if not (root/".complete").exists():
        from abovqa.sample import make_sample_abo
        print(f"building {root} (once) ...", flush=True); t = time.perf_counter()
        make_sample_abo(root, listings=listings, seed=seed, images=False)
        (root/".complete").write_text("ok"); print(f"built in {time.perf_counter() - t:.0f} s", flush=True)
    return root

def listing_files(root): return sorted((root/"listings/metadata").glob("listings_*.json.gz"))

def cpu(): return time.process_time()

def floor(files) -> dict:
    "(a) bare gunzip + json.loads of every line, single process."
    t, c, n, size = time.perf_counter(), cpu(), 0, 0
    for f in files:
        with gzip.open(f, "rb") as fh:
            for line in fh: json.loads(line); n += 1; size += len(line)
    return dict(wall_s=time.perf_counter() - t, cpu_s=cpu() - c, lines=n, mb=size/1e6)

def decoders(files) -> dict:
    "Decode-only microseconds per line, json vs orjson, on the lines of two files (gunzip excluded)."
    lines = [l for f in files[:2] for l in gzip.open(f, "rb")]
    out = {}
    for name, loads in [("json", json.loads), ("orjson", orjson.loads)]:
        best = min(_timed(lambda: [loads(l) and None for l in lines]) for _ in range(3))
        out[name] = best/len(lines)*1e6
    return out

def _timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def curate_run(root, workers, code=None) -> dict:
    "(b) `abovqa curate` in a fresh process (the package under `code`, else this checkout); wall time of the command and of the curate call."
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(code or Path(__file__).parents[1])}
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", CHILD, str(root), "-o", out, "--quiet", "--workers", str(workers)],
                           capture_output=True, text=True, env=env, cwd=out)   # cwd: `-c` puts it first on sys.path
        wall = time.perf_counter() - t
        if r.returncode: sys.exit(f"curate failed:\n{r.stderr}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res["report"] = json.loads((Path(out)/"curation_report.json").read_text())
    return dict(res, command_s=wall)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listings", type=int, default=147702)
    p.add_argument("--seed", type=int, default=0, help="catalogue seed")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--baseline", metavar="DIR", help="also run the abovqa package found in DIR (e.g. an export of an older commit)")
    a = p.parse_args(argv)
    root = catalogue(a.listings, a.seed); files = listing_files(root)
    with gzip.open(root/"images/metadata/images.csv.gz", "rt") as f: n_images = sum(1 for _ in f) - 1
    print(f"catalogue: {len(files)} files, {n_images} image rows, {sum(f.stat().st_size for f in files)/1e6:.0f} MB gzipped")
    dec = decoders(files)
    print(f"decode only: json {dec['json']:.1f} us/line, orjson {dec['orjson']:.1f} us/line ({dec['json']/dec['orjson']:.1f}x)")
    rounds = []
    for i in range(a.repeat):
        load = os.getloadavg()[0]
        fl = floor(files)
        runs = {w: curate_run(root, w) for w in a.workers}
        if a.baseline: runs.update({f"{w}-baseline": curate_run(root, w, a.baseline) for w in a.workers})
        rounds.append(dict(load=load, floor=fl, runs=runs))
        print(f"\nround {i+1} (load avg {load:.1f}): floor {fl['wall_s']:.2f} s wall / {fl['cpu_s']:.2f} s cpu, "
              f"{fl['lines']} lines, {fl['mb']:.0f} MB")
        for w, r in runs.items():
            rep = r["report"]
            print(f"  curate --workers {w}: curate() {r['curate_s']:.2f} s = {r['curate_s']/fl['wall_s']:.2f}x floor "
                  f"(whole command {r['command_s']:.2f} s = {r['command_s']/fl['wall_s']:.2f}x, imports {r['import_s']:.2f} s); "
                  f"cpu {r['cpu_s']:.2f} s = {r['cpu_s']/fl['cpu_s']:.2f}x floor cpu; peak rss main {r['main_rss_mb']:.0f} MB, "
                  f"largest worker {r['worker_rss_mb']:.0f} MB; read {rep['listings_read']}, final {rep['final']}")
            print("    stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["stages"].items()))
    print("\nmedian over rounds (ratio to the floor of the same round):")
    for w in [k for k in rounds[0]["runs"]]:
        med = lambda k, base: statistics.median(r["runs"][w][k]/r["floor"][base] for r in rounds)
        nw = int(str(w).split("-")[0])
        worst_mem = max(r["runs"][w]["main_rss_mb"] + (nw if nw > 1 else 0)*r["runs"][w]["worker_rss_mb"] for r in rounds)
        print(f"  workers {w}: curate() {med('curate_s', 'wall_s'):.2f}x wall, whole command {med('command_s', 'wall_s'):.2f}x wall, "
              f"{med('cpu_s', 'cpu_s'):.2f}x cpu; peak memory <= {worst_mem:.0f} MB (main + workers)")
    CACHE.mkdir(exist_ok=True)
    (CACHE/"curate-bench.json").write_text(json.dumps(dict(decoders=dec, rounds=rounds), indent=1, default=str))

if __name__ == "__main__":
    main()
