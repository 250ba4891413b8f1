"""Speed of abovqa.metrics: lexical metrics on 100k pairs, model metrics in pairs/s on the local stand-ins.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python bench/metrics.py [--n 100000] [--model-n 1000]
    OMP_NUM_THREADS=1 python bench/metrics.py --ci-only       # only the cluster-bootstrap intervals (abovqa.stats)

The interval benchmark times `metrics.intervals` (95% cluster bootstrap over images, all metric columns in one
pass) on 10,000 rows (2,000 images x 5 questions) x 1,000 resamples x 6 metrics, and the paired bootstrap of one
metric, against a per-resample Python loop over the same clusters.

Lexical timings are compared with a per-row loop over the same functions (SQuAD normalisation per row, a fresh
`RougeScorer.score` per row) measured in the same run. Model metrics use all-MiniLM-L6-v2 (BERTScore at layer 6,
cosine) and the tiny random BART from abovqa.testing, on CPU unless a GPU is visible; each is timed once on distinct
pairs (worst case) and once on VQA-like data where answers repeat (the suite scores each distinct pair once).
"""
import argparse, json, os, random, time

for k, v in dict(HF_HUB_OFFLINE="1", HF_EVALUATE_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1").items():
    os.environ.setdefault(k, v)

import torch
from abovqa import metrics as M
from abovqa.vocab import COLORS, MATERIALS, SHAPES
from abovqa.testing import minilm_path, tiny_bart

TEMPLATES = ["{}", "{}", "{}.", "The color is {}.", "It appears to be made of {}", "It is {}.", "probably {}",
             "dark {}", "Answer: {}", "I think it is {}", "The {} one", "{} and white"]

def vqa_like(n: int, seed: int = 0):
    "VQA-like pairs: one-word references, predictions from a few answer templates (answers repeat, as in real runs)."
    rng, vocab = random.Random(seed), COLORS + MATERIALS + SHAPES + ["yes", "no"]
    refs = [rng.choice(vocab) for _ in range(n)]
    preds = [rng.choice(TEMPLATES).format(r if rng.random() < 0.6 else rng.choice(vocab)) for r in refs]
    return preds, refs

def distinct(n: int, seed: int = 1):
    "Worst case: nearly every pair distinct (random 1-8-word sentences)."
    rng = random.Random(seed)
    vocab = COLORS + MATERIALS + SHAPES + "the a it is made of appears to be mug chair lamp shoe with handle".split()
    words = lambda k: " ".join(rng.choice(vocab) for _ in range(k))
    return [words(rng.randint(1, 8)) for _ in range(n)], [words(rng.randint(1, 3)) for _ in range(n)]

CPU = {}

def timed(f, *a, **kw):
    "Result and wall seconds of f(*a, **kw); its CPU seconds go to CPU[f.__name__] (the box is shared)."
    t, c = time.perf_counter(), time.process_time()
    r = f(*a, **kw)
    CPU[getattr(f, "__name__", "f")] = time.process_time() - c
    return r, time.perf_counter() - t

def per_row_baseline(preds, refs):
    "The naive way: normalise, SQuAD EM/F1 and rouge-score row by row."
    from rouge_score.rouge_scorer import RougeScorer
    sc = RougeScorer(["rougeL"])
    out = []
    for p, r in zip(preds, refs):
        p, r = M.normalize_short(p), M.clean_reference(r)
        out.append((M.exact_match(p, r), M.token_f1(p, r), sc.score(r, p)["rougeL"].fmeasure))
    return out

def loop_bootstrap(v, img, n_resamples, seed=0):
    "The naive way: one resample at a time, rows gathered per drawn image."
    import numpy as np
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(img == g) for g in range(img.max() + 1)]
    out = []
    for _ in range(n_resamples):
        rows = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
        out.append(v[rows].mean(0))
    return np.array(out)

def bench_ci(rows: int = 10_000, per_image: int = 5, n_resamples: int = 1000) -> dict:
    "Seconds for cluster-bootstrap intervals of 6 metrics (and one paired comparison) on `rows` rows."
    import numpy as np, pandas as pd
    from abovqa import stats as S
    rng = np.random.default_rng(0)
    img = np.repeat(np.arange(rows // per_image), per_image)
    df = pd.DataFrame(rng.random((rows, 6)), columns=list(M.METRICS))
    M.intervals(df.head(100), img[:100].tolist())                            # warm-up
    res = {"ci_rows": rows, "ci_images": rows // per_image, "ci_resamples": n_resamples}
    _, res["ci_6_metrics_s"] = timed(M.intervals, df, img.tolist(), None, n_resamples)
    _, res["paired_bootstrap_1_metric_s"] = timed(S.paired_bootstrap, df.exact_match, df.token_f1, img, n_resamples)
    _, res["ci_per_resample_loop_6_metrics_s"] = timed(loop_bootstrap, df.to_numpy(), img, n_resamples)
    return res

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="pairs for the lexical metrics")
    ap.add_argument("--model-n", type=int, default=1000, help="pairs for the model metrics")
    ap.add_argument("--ci-only", action="store_true", help="only time the bootstrap intervals")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if a.ci_only:
        res = bench_ci() | {"load_average_1min": os.getloadavg()[0]}
        for k, v in res.items(): print(f"{k:45s} {round(v, 3) if isinstance(v, float) else v}")
        return print(json.dumps(res))
    res = {"n": a.n, "model_n": a.model_n, "device": M.resolve_device(), "threads": torch.get_num_threads()}
    res |= bench_ci()

    preds, refs = vqa_like(a.n)
    M.score(preds[:100], refs[:100], metrics=M.LEXICAL)                       # warm-up (imports, regexes)
    (s, _), res["lexical_vqa_like_s"] = timed(M.score, preds, refs, metrics=M.LEXICAL)
    res["lexical_vqa_like_cpu_s"] = CPU["score"]
    _, res["per_row_vqa_like_s"] = timed(per_row_baseline, preds, refs)
    res["per_row_vqa_like_cpu_s"] = CPU["per_row_baseline"]
    res["lexical_vqa_like_exact_match"] = s["exact_match"]
    dp, dr = distinct(a.n)
    _, res["lexical_distinct_s"] = timed(M.score, dp, dr, metrics=M.LEXICAL)
    res["lexical_distinct_cpu_s"] = CPU["score"]
    _, res["per_row_distinct_s"] = timed(per_row_baseline, dp, dr)
    res["per_row_distinct_cpu_s"] = CPU["per_row_baseline"]
    res["distinct_pairs"] = len(set(zip(dp, dr)))
    _, res["normalize_short_100k_distinct_s"] = timed(M.normalize_all, dp, "short")

    mini, bart = minilm_path(), str(tiny_bart())
    dev = M.resolve_device()
    mp, mr = distinct(a.model_n, seed=2)
    vp, vr = vqa_like(a.model_n, seed=3)
    vp = M.normalize_all(vp)
    runs = {"bertscore_minilm_l6": lambda p, r: M.bertscore(p, r, model=mini, num_layers=6, device=dev),
            "cosine_minilm": lambda p, r: M.cosine(p, r, model=mini, device=dev),
            "bartscore_tiny_bart": lambda p, r: M.bartscore(p, r, model=bart, device=dev)}
    for name, f in runs.items():
        f(mp[:32], mr[:32])                                                   # load the model, warm up
        _, t = timed(f, mp, mr); res[f"{name}_distinct_pairs_per_s"] = round(a.model_n / t, 1)
        _, t = timed(f, vp, vr); res[f"{name}_vqa_like_pairs_per_s"] = round(a.model_n / t, 1)
    res["cpu_speedup_vs_per_row_vqa_like"] = round(res["per_row_vqa_like_cpu_s"] / res["lexical_vqa_like_cpu_s"], 1)
    res["cpu_speedup_vs_per_row_distinct"] = round(res["per_row_distinct_cpu_s"] / res["lexical_distinct_cpu_s"], 2)
    res["load_average_1min"] = os.getloadavg()[0]
    for k, v in res.items(): print(f"{k:45s} {round(v, 3) if isinstance(v, float) else v}")
    print(json.dumps(res))

if __name__ == "__main__": main()
