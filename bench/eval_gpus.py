"""Data-parallel evaluation (`--gpus N`) and length-grouped batches, measured on CPU against a baseline in the same run.

    python bench/eval_gpus.py [--part gpus,grouping] [--rows 2000] [--gpus 2] [--json FILE]

gpus: `abovqa evaluate` as a command, once with one process and once with `--gpus N` (N CPU processes under
torchrun, one thread each), on a compute-bound stand-in (a random ViLT widened to hidden 512 and 4 layers by default,
64x64 images, so one sample is tens of milliseconds of matrix work and not Python overhead; a 7B model on a T4 is
far heavier per sample, so this under- rather than over-states the gain). Wall time of the whole command (imports,
model load, answering, scoring) and of the answering alone; predictions.csv must be byte-identical and the
metrics equal. Target: wall(N=2) <= 0.65 x wall(1).

grouping: the same rows answered by a widened tiny LLaVA (generative, text-dominated) in the table's order and
length-grouped, batch 16, in this process: padding fraction of the text inputs, samples/s, and whether the
answers are identical to each other and to batch size 1 on a subset.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
for k, v in dict(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false").items():
    os.environ.setdefault(k, v)
import pandas as pd
from PIL import Image

COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
WORDS = "what is the main color of the product shown in this catalogue picture and is it made of wood metal or plastic".split()


def workload(d: Path, rows: int, seed: int = 0) -> Path:
    "40 images and `rows` questions of 2 to 22 words (ABO-like mix), as test.csv."
    import random
    rng = random.Random(seed)
    for i in range(40):
        p = d/"images"/f"{i:02x}.jpg"; p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64 + 8 * (i % 5), 64), COLORS[i % len(COLORS)]).save(p)
    qs = [" ".join(WORDS[:rng.choice([2, 3, 4, 5, 6, 8, 12, 16, 22])]) + "?" for _ in range(rows)]
    t = pd.DataFrame(dict(image_path=[f"{i % 40:02x}.jpg" for i in range(rows)], question=qs,
                          answer=[COLORS[i % 40 % len(COLORS)] for i in range(rows)]))
    t.to_csv(d/"test.csv", index=False)
    return d/"test.csv"


def run_cli(args):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", "import sys; from abovqa.cli import main; sys.exit(main())", "evaluate", *args],
                       capture_output=True, text=True)
    if r.returncode: raise SystemExit(r.stderr[-3000:])
    return time.perf_counter() - t


def bench_gpus(d: Path, data: Path, gpus: int, hidden: int = 512, layers: int = 4) -> dict:
    from abovqa import testing
    model = testing.tiny_vilt(d/"vilt-wide", hidden=hidden, layers=layers, heads=4, image_size=64)
    base = ["--family", "vilt", "--model-path", str(model), "--data", str(data), "--images", str(d/"images"),
            "--metrics", "em,f1", "--batch-size", "16", "--no-progress"]
    res = {}
    for n in (1, gpus):
        out = d/f"gpus{n}"
        wall = run_cli([*base, "-o", str(out), "--gpus", str(n)])
        info = json.loads((out/"run.json").read_text())
        res[n] = dict(wall_s=round(wall, 2), predict_s=info["timings"]["predict_s"], n=info["n_answered"],
                      launch_s=info["timings"].get("launch_s"), load_s=info["timings"]["load_s"],
                      metrics=json.loads((out/"metrics.json").read_text())["summary"])
    same = (d/"gpus1/predictions.csv").read_bytes() == (d/f"gpus{gpus}/predictions.csv").read_bytes()
    return dict(part="gpus", rows=res[1]["n"], processes=gpus, wall_1_s=res[1]["wall_s"], wall_n_s=res[gpus]["wall_s"],
                wall_ratio=round(res[gpus]["wall_s"] / res[1]["wall_s"], 3), answer_1_s=res[1]["predict_s"],
                answer_n_s=res[gpus]["predict_s"], answer_ratio=round(res[gpus]["predict_s"] / res[1]["predict_s"], 3),
                load_1_s=res[1]["load_s"], load_n_s=res[gpus]["load_s"], launch_n_s=res[gpus]["launch_s"],
                identical_predictions=same, same_metrics=res[1]["metrics"] == res[gpus]["metrics"])


def bench_grouping(d: Path, data: Path, batch_size: int = 16, subset: int = 64) -> dict:
    from abovqa import testing
    from abovqa.evaluate import predict_table, read_vqa_table
    from abovqa.models import get_adapter
    ad = get_adapter("llava")
    model, proc = ad.load(testing.tiny_llava(d/"llava-wide", hidden=128, layers=2, heads=4))
    table = read_vqa_table(data, None)
    out = {}
    for grouped in (False, True):
        stats = {}
        t = time.perf_counter()
        raw, _ = predict_table(ad, model, proc, table, d/"images", batch_size, 3, progress=False,
                               group_by_length=grouped, stats=stats)
        dt = time.perf_counter() - t
        out[grouped] = dict(raw=raw, s=dt, rate=len(table) / dt, pad=stats["padding_fraction"])
    one, _ = predict_table(ad, model, proc, table.head(subset), d/"images", 1, 3, progress=False)
    return dict(part="grouping", rows=len(table), batch_size=batch_size,
                padding_before=out[False]["pad"], padding_after=out[True]["pad"],
                samples_per_s_before=round(out[False]["rate"], 1), samples_per_s_after=round(out[True]["rate"], 1),
                speedup=round(out[True]["rate"] / out[False]["rate"], 2),
                same_answers=out[False]["raw"] == out[True]["raw"], same_as_bs1=out[True]["raw"][:subset] == one)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", default="gpus,grouping")
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--gpus", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--hidden", type=int, default=512, help="width of the ViLT stand-in (compute per sample)")
    p.add_argument("--layers", type=int, default=4, help="depth of the ViLT stand-in")
    a = p.parse_args(argv)
    import torch; torch.set_num_threads(1)
    d = Path(tempfile.mkdtemp(prefix="eval-gpus-"))
    data = workload(d, a.rows)
    rows = []
    if "gpus" in a.part: rows.append(bench_gpus(d, data, a.gpus, a.hidden, a.layers)); print(json.dumps(rows[-1]), flush=True)
    if "grouping" in a.part: rows.append(bench_grouping(d, data)); print(json.dumps(rows[-1]), flush=True)
    load = os.getloadavg()[0]
    if a.json: Path(a.json).write_text(json.dumps(dict(rows=rows, cpus=os.cpu_count(), load_avg=load), indent=2))
    print(f"cpus {os.cpu_count()}, load average {load:.1f}")
    ok = all(r.get("identical_predictions", True) and r.get("same_answers", True) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
