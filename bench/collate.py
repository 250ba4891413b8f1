"""Is the data pipeline a bottleneck for fine-tuning? (CPU benchmark)

Measures, in one process and on the same machine:
  load     samples/s of `VQADataset[i]` (open a 256 px JPEG from disk, convert to RGB), the loader workers' job;
  collate  samples/s of `VQACollator` (the family adapter's `train_batch`: processor + labels) on loaded rows;
  step     samples/s of one LoRA training step (forward + backward + AdamW) of the tiny model on a collated batch.
and prints their ratios. The pipeline (load then collate, one worker) is not the bottleneck when
`pipeline / step` > 1: then one loader worker feeds even the tiny model, whose step is ~1000× faster than a
real 7B QLoRA step (BLIP-base LoRA on a T4: ≈29 samples/s; LLaVA-7B QLoRA: ≈0.5-2 samples/s, see
shared/notes/kaggle_t4.md B8). Real models see 336-448 px inputs from the processor, so `collate` here uses the
tiny processors (32-56 px); `--size` sets the source image size on disk.

    python bench/collate.py [--n 256] [--batch 16] [--families blip llava qwen]
"""
import argparse, os, tempfile, time
from pathlib import Path

for k, v in dict(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline").items(): os.environ.setdefault(k, v)

import numpy as np
import pandas as pd
import torch
from PIL import Image

from abovqa import testing
from abovqa.finetune import add_lora
from abovqa.train_data import VQACollator, VQADataset
from abovqa.models import get_adapter


def make_split(root: Path, n: int, size: int) -> tuple[Path, Path]:
    "n noisy JPEGs of `size` px in an ABO-like layout and a train.csv pointing at them."
    rng, rows = np.random.default_rng(0), []
    for i in range(n):
        rel = f"{i % 16:02x}/{i:05d}.jpg"
        (root / "images/small" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "images/small" / rel, quality=90)
        rows.append(dict(image_path=rel, question="What color is the product?", answer=["red", "blue"][i % 2]))
    (root / "split").mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "split/train.csv", index=False)
    return root / "split", root


def rate(fn, n_samples: int, repeat: int = 3) -> float:
    "Best samples/s of `fn()` over `repeat` runs (after one warm-up)."
    fn(); best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t)
    return n_samples / best


def bench_family(family: str, ds: VQADataset, batch: int) -> dict:
    path = {"blip": testing.tiny_blip, "llava": testing.tiny_llava, "qwen": testing.tiny_qwen}[family]()
    ad = get_adapter(family)
    model, proc = ad.load(str(path))
    model = add_lora(model, ad.lora_config()).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rows = [ds[i] for i in range(batch)]
    coll = VQACollator(ad, proc)
    b = coll(rows)

    def step():
        loss = model(**b).loss; loss.backward(); opt.step(); opt.zero_grad()

    return dict(collate=rate(lambda: coll(rows), batch), step=rate(step, batch))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=256, help="images on disk")
    p.add_argument("--size", type=int, default=256, help="their size (ABO small: <= 256 px)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--families", nargs="+", default=["blip", "llava", "qwen"])
    a = p.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        data, images = make_split(Path(d), a.n, a.size)
        ds = VQADataset(data / "train.csv", images)
        load = rate(lambda: [ds[i] for i in range(len(ds))], len(ds))
        out = {}
        for fam in a.families:
            r = bench_family(fam, ds, a.batch)
            pipe = 1 / (1 / load + 1 / r["collate"])           # one worker: load then collate
            out[fam] = dict(load=load, collate=r["collate"], pipeline=pipe, step=r["step"], pipeline_over_step=pipe / r["step"])
    df = pd.DataFrame(out).T.round(1)
    print(f"samples/s, torch threads {torch.get_num_threads()}, batch {a.batch}, {a.n} JPEGs of {a.size} px")
    print(df.to_string())
    return df


if __name__ == "__main__":
    main()
