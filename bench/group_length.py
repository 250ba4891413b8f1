"""Length-grouped training batches: padding fraction and samples/s, random order vs `GroupedSampler` (CPU benchmark).

One epoch over N rows with mixed-length questions (ABO-like: 3 to ~30 words) and 1-3 word answers, batches of
`--batch`, for each family's tiny model, in the same process and interleaved (random, grouped, random, grouped...):
  padding  share of the batch's token slots that are padding (input_ids, plus BLIP's decoder tokens);
  slots_ratio  token slots per epoch, grouped / random (what a model whose step cost grows with sequence length
             pays: the real 7B models);
  samples/s  collate (the adapter's `train_batch`) + one LoRA step (forward, backward, AdamW) per batch, best of
             `--repeat` epochs.
The random order is a seeded `RandomSampler` (what the Trainer used before); the grouped one is
`abovqa.train_data.GroupedSampler` over `text_lengths` (what `finetune` uses now), same seed.

    python bench/group_length.py [--n 512] [--batch 16] [--families blip llava qwen] [--repeat 2]
"""
import argparse, os, time

for k, v in dict(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline").items(): os.environ.setdefault(k, v)

import numpy as np
import pandas as pd
import torch
from PIL import Image

from abovqa import testing
from abovqa.finetune import add_lora
from abovqa.train_data import GroupedSampler, VQACollator, text_lengths
from abovqa.models import get_adapter

SHORT = ["what color is it?", "what material?", "what shape is this?", "what brand?"]
LONG = ["looking at the product in the picture, which is shown against a plain white background, what is the main "
        "color of its largest visible surface?",
        "if you consider only the material that the frame or the outer shell of this product is made of, what material "
        "would you say it is?",
        "what is the general shape of this item when it is viewed from the front, as it appears in this photo?"]
ANSWERS = ["red", "stainless steel", "dark walnut brown", "round", "plastic", "light grey"]


def make_rows(n: int, seed: int = 0) -> list[dict]:
    "n rows: half short questions, half long ones with a random number of extra words; small noisy images."
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        q = SHORT[i % 4] if rng.random() < 0.5 else LONG[i % 3] + " please answer" * int(rng.integers(0, 4))
        img = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        rows.append(dict(image=img, question=q, answer=ANSWERS[int(rng.integers(0, len(ANSWERS)))],
                         image_path=f"{i}.jpg", error=None))
    return rows


def padding(batch: dict) -> tuple[int, int]:
    "(padding slots, all slots) of a collated batch's token tensors."
    pad = tot = 0
    for k in ("attention_mask", "decoder_attention_mask"):
        if k in batch: m = batch[k]; pad += int((m == 0).sum()); tot += m.numel()
    return pad, tot


def epoch(order, rows, batch, coll, model, opt) -> dict:
    pad = tot = 0; t = time.perf_counter()
    for b in range(0, len(order), batch):
        x = coll([rows[i] for i in order[b:b + batch]])
        p, n = padding(x); pad += p; tot += n
        loss = model(**x).loss; loss.backward(); opt.step(); opt.zero_grad()
    return dict(padding=pad / tot, slots=tot, samples_s=len(order) / (time.perf_counter() - t))


def bench_family(family: str, rows: list[dict], batch: int, repeat: int, seed: int = 42) -> dict:
    path = {"blip": testing.tiny_blip, "llava": testing.tiny_llava, "qwen": testing.tiny_qwen}[family]()
    ad = get_adapter(family)
    model, proc = ad.load(str(path))
    model = add_lora(model, ad.lora_config()).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    coll = VQACollator(ad, proc)
    g = torch.Generator().manual_seed(seed)
    orders = dict(random=torch.randperm(len(rows), generator=g).tolist(),
                  grouped=list(GroupedSampler(text_lengths(proc, [r["question"] for r in rows],
                                                           [r["answer"] for r in rows]), batch, seed)))
    epoch(orders["random"][:2 * batch], rows, batch, coll, model, opt)          # warm-up
    res = {k: [] for k in orders}
    for _ in range(repeat):
        for k, o in orders.items(): res[k].append(epoch(o, rows, batch, coll, model, opt))
    out = {}
    for k, rs in res.items():
        out[f"{k}_padding"] = rs[0]["padding"]; out[f"{k}_slots"] = rs[0]["slots"]
        out[f"{k}_samples_s"] = max(r["samples_s"] for r in rs)
    out["slots_ratio"] = out["grouped_slots"] / out["random_slots"]      # token slots computed per epoch
    out["speedup"] = out["grouped_samples_s"] / out["random_samples_s"]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=512, help="rows per epoch")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeat", type=int, default=2, help="epochs per order (best samples/s kept)")
    p.add_argument("--families", nargs="+", default=["blip", "llava", "qwen"])
    a = p.parse_args(argv)
    torch.manual_seed(0)
    rows = make_rows(a.n)
    table = pd.DataFrame({fam: bench_family(fam, rows, a.batch, a.repeat) for fam in a.families}).T
    print(f"{a.n} rows, batch {a.batch}, {torch.get_num_threads()} torch threads")
    print(table.round(3).to_string())
    return table


if __name__ == "__main__":
    main()
