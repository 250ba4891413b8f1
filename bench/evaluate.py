"""Batched vs per-sample answering on the same tiny model, on CPU: same answers, speed-up at batch 32.

    python bench/evaluate.py [--families blip,llava,qwen,vilt] [--n 64] [--batch-size 32] [--repeats 3]

The per-sample loop is how the seed project evaluated (one `generate` per question). Both paths go through
`abovqa.models` adapters; timings are the best of `--repeats` runs, measured in this process, so the ratio is
robust to a busy machine. Target: >= 5x at batch 32. Prints a table (and writes --json FILE).
The questions differ in token length (1 to 17 words, mixed case), so `same_answers` also checks that padding
does not change answers (issue #11).

Measured 2026-11-29 (`--n 64 --batch-size 32 --repeats 2`, OMP_NUM_THREADS=1, tiny models on the real
tokenizers, 2-core machine shared with other jobs, load average ~9):

| family | per-sample s | batched s | per-sample /s | batched /s | speed-up | same answers |
|---|---|---|---|---|---|---|
| blip  | 7.737  | 0.504 | 8.3  | 127.1 | 15.4x | yes |
| llava | 6.084  | 0.655 | 10.5 | 97.7  | 9.3x  | yes |
| qwen  | 11.506 | 2.131 | 5.6  | 30.0  | 5.4x  | yes |
| vilt  | 2.145  | 0.251 | 29.8 | 255.1 | 8.6x  | yes |
"""
import argparse, json, os, sys, time
from pathlib import Path
for k, v in dict(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1").items(): os.environ.setdefault(k, v)
import pandas as pd
import torch
from PIL import Image
from abovqa import testing
from abovqa.models import get_adapter

COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
QUESTIONS = ["Color?", "what shape is it?", "IS IT RED?", "What is the colour of the main product shown in this photograph, in one word?",
             "what is it made of?", "Which Pattern Does This Product Have On Its Surface?"]   # mixed token lengths


def workload(n):
    imgs = [Image.new("RGB", (48 + 4 * (i % 5), 48), COLORS[i % len(COLORS)]) for i in range(n)]
    return imgs, [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]


def best_time(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter(); out = fn(); best = min(best, time.perf_counter() - t)
    return best, out


def bench_family(family, n, bs, repeats, max_new_tokens=4):
    ad = get_adapter(family)
    model, proc = ad.load(getattr(testing, f"tiny_{family}")())
    imgs, qs = workload(n)
    ad.predict(model, proc, imgs[:2], qs[:2], max_new_tokens=max_new_tokens)        # warm-up
    t1, single = best_time(lambda: [ad.predict(model, proc, [i], [q], max_new_tokens=max_new_tokens)[0]
                                    for i, q in zip(imgs, qs)], repeats)
    tb, batched = best_time(lambda: [a for s in range(0, n, bs)
                                     for a in ad.predict(model, proc, imgs[s:s + bs], qs[s:s + bs], max_new_tokens=max_new_tokens)],
                            repeats)
    return dict(family=family, n=n, batch_size=bs, per_sample_s=round(t1, 3), batched_s=round(tb, 3),
                per_sample_rate=round(n / t1, 1), batched_rate=round(n / tb, 1), speedup=round(t1 / tb, 2),
                same_answers=single == batched)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="blip,llava,qwen,vilt")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows = [bench_family(f, a.n, a.batch_size, a.repeats) for f in a.families.split(",")]
    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    if a.json: Path(a.json).write_text(json.dumps(dict(rows=rows, threads=torch.get_num_threads()), indent=2))
    ok = df.same_answers.all() and (df.speedup >= 5).all()
    print("target (same answers, >= 5x at batch", a.batch_size, "):", "met" if ok else "NOT met")
    return 0 if df.same_answers.all() else 1


if __name__ == "__main__":
    sys.exit(main())
