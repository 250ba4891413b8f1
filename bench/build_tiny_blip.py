#!/usr/bin/env python
"""Build the shipped tiny BLIP base: `python bench/build_tiny_blip.py [--steps 2000] [--seed 0] [--out DIR]`.

Pre-trains the tiny BLIP-VQA of `abovqa.testing` on generic shapes (about 80-150 s on 2 CPU cores) and saves it to
`abovqa/assets/tiny-blip-base/` (config, safetensors, processor and tokenizer files, pretrain.json with the generic
validation exact match)."""
import argparse, json, os
from pathlib import Path

for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"): os.environ.setdefault(k, "1")

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1]/"abovqa"/"assets"/"tiny-blip-base"))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 on an idle machine; oversubscribed threads are far slower)")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    from abovqa.testing import pretrain_tiny_blip
    out = pretrain_tiny_blip(a.out, steps=a.steps, seed=a.seed)
    info = json.loads((out/"pretrain.json").read_text())
    print(json.dumps(info, indent=1))
    print("size:", sum(f.stat().st_size for f in out.iterdir()), "bytes in", out)

if __name__ == "__main__": main()
