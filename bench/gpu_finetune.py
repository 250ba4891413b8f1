"""GPU benchmark of the fine-tuning set-ups: step time and peak memory (prepared for a GPU machine; CI never runs it).

Models are built from the real architectures' configs with random weights (no download needed):
  blip   BLIP-VQA-base (BlipConfig defaults = Salesforce/blip-vqa-base), fp32 weights + fp16 autocast, LoRA all-linear
  llava  LLaVA-1.5-7B (CLIP-L/336 + Llama-2-7B), 4-bit nf4 QLoRA, 576 image tokens + 40 text tokens per sample
  qwen   Qwen2.5-VL-7B, 8-bit QLoRA, a 252x252 image = 81 tokens (ABO small) + 40 text tokens per sample
The 7B models are saved once (fp16, ~15 GB each) under --cache and loaded by `abovqa.memory.load_base`, the loader
`abovqa finetune` uses (Qwen: frozen fp16 vision tower); `plan_gib` is its memory plan for the same batch.
Each set-up runs `--steps` optimizer steps (after 2 warm-up steps) of forward + backward + AdamW on synthetic inputs
with gradient checkpointing (non-reentrant) and fp16 GradScaler, exactly as the Trainer presets would.

    python bench/gpu_finetune.py --models blip llava qwen --batch 8 4 4 --steps 10 [--t4-memory]
    torchrun --nproc_per_node 2 bench/gpu_finetune.py ...     # data-parallel, one copy per GPU (2 GPUs only)
    python bench/gpu_finetune.py --cpu-smoke                  # tiny configs on CPU: checks the code path only

--t4-memory caps this process at 14.7 GiB (a T4) so an OOM here means it would not fit a T4 either.
Results go to stdout and --out (JSON): model, batch, world, step_s, samples_per_s, peak_alloc_gb, peak_reserved_gb.
"""
import argparse, json, os, time
from pathlib import Path

for k, v in dict(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline").items(): os.environ.setdefault(k, v)

import sys
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_eval import make_checkpoint                      # random-weight checkpoint + processor, real or tiny config
from abovqa.finetune import FAMILIES, add_lora, check_trainable_fp32, device_map_for
from abovqa.memory import load_base, memory_plan
from abovqa.models import get_adapter


def build(name, tiny, cache: Path, dev, vision="fp16"):
    "(peft model, config) for `name`: random weights saved once, then loaded by `load_base` as `abovqa finetune` does."
    path = cache / f"{name}{'-tiny' if tiny else ''}"
    if not (path / "config.json").exists(): make_checkpoint(name, "tiny" if tiny else "real", path)
    quant, cuda = FAMILIES[name]["quant"], dev.type == "cuda"
    model, _ = load_base(name, path, quant, cuda, device_map_for(cuda, 1, dev.index or 0), vision)
    pm = add_lora(model, get_adapter(name).lora_config(), gradient_checkpointing=True)   # non-reentrant, as `abovqa finetune`
    check_trainable_fp32(pm)
    return pm, model.config


def batch(name, cfg, b, dev, text=40):
    "Synthetic inputs with the real shapes: image tokens, text tokens, labels on the last 2 tokens."
    g = torch.Generator().manual_seed(0)
    if name == "blip":
        s = cfg.vision_config.image_size
        v = cfg.text_config.vocab_size
        ids = torch.randint(min(1000, v // 2), min(2000, v), (b, 12), generator=g)
        return dict(pixel_values=torch.randn(b, 3, s, s, generator=g), input_ids=ids, attention_mask=torch.ones_like(ids),
                    labels=torch.randint(min(1000, v // 2), min(2000, v), (b, 4), generator=g))
    if name == "llava":
        vc = cfg.vision_config; n_img = (vc.image_size // vc.patch_size) ** 2
        ids = torch.cat([torch.full((b, n_img), cfg.image_token_index), torch.randint(100, min(30000, cfg.text_config.vocab_size - 100), (b, text), generator=g)], 1)
        lab = torch.full_like(ids, -100); lab[:, -2:] = ids[:, -2:]
        return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=lab,
                    pixel_values=torch.randn(b, 3, vc.image_size, vc.image_size, generator=g))
    vc = cfg.vision_config; grid = 18 if vc.depth > 2 else 4              # 252 px -> 18x18 patches -> 81 tokens
    n_img = grid * grid // vc.spatial_merge_size ** 2
    img = torch.cat([torch.tensor([cfg.vision_start_token_id]), torch.full((n_img,), cfg.image_token_id),
                     torch.tensor([cfg.vision_end_token_id])])
    ids = torch.cat([img.repeat(b, 1), torch.randint(100, min(150000, cfg.text_config.vocab_size - 100), (b, text), generator=g)], 1)
    mm = (ids == cfg.image_token_id).int()
    lab = torch.full_like(ids, -100); lab[:, -2:] = ids[:, -2:]
    pp = 3 * vc.temporal_patch_size * vc.patch_size ** 2
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=lab, mm_token_type_ids=mm,
                pixel_values=torch.randn(b * grid * grid, pp, generator=g), image_grid_thw=torch.tensor([[1, grid, grid]] * b))


def run(name, b, steps, tiny, cache, dev, world, rank):
    model, cfg = build(name, tiny, cache, dev)
    plan = memory_plan(name, cache / f"{name}{'-tiny' if tiny else ''}", FAMILIES[name]["quant"], b)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index],   # as `abovqa finetune`:
                                                          find_unused_parameters=True)  # LLaVA's last ViT layer gets no grad
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    scaler = torch.amp.GradScaler(enabled=dev.type == "cuda")
    inp = {k: v.to(dev) for k, v in batch(name, cfg, b, dev).items()}
    if "pixel_values" in inp and name != "blip" and dev.type == "cuda": inp["pixel_values"] = inp["pixel_values"].half()
    model.train()

    def step():
        with torch.autocast(dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
            loss = model(**inp).loss
        scaler.scale(loss).backward(); scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, 1.0); scaler.step(opt); scaler.update(); opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(2): step()
    if dev.type == "cuda": torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter(); losses = [step() for _ in range(steps)]
    if dev.type == "cuda": torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    res = dict(model=name, batch=b, world=world, step_s=round(dt, 3), samples_per_s=round(b * world / dt, 2),
               loss_first=round(losses[0], 3), loss_last=round(losses[-1], 3),
               trainable=sum(p.numel() for p in params), plan_gib=round(plan["total_gib"], 2))
    if dev.type == "cuda":
        res.update(peak_alloc_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                   peak_reserved_gb=round(torch.cuda.max_memory_reserved() / 2**30, 2), gpu=torch.cuda.get_device_name(dev))
    del model, opt
    if dev.type == "cuda": torch.cuda.empty_cache()
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["blip", "llava", "qwen"])
    p.add_argument("--batch", nargs="+", type=int, default=[8, 4, 4], help="per device, one per model")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--cache", default="/tmp/abovqa-gpu-bench", help="where the random 7B checkpoints are saved")
    p.add_argument("--out", default=None, help="write results as JSON here")
    p.add_argument("--t4-memory", action="store_true", help="cap GPU memory at 14.7 GiB like a T4")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny configs on CPU (code-path check)")
    a = p.parse_args(argv)
    world, rank, local = (int(os.environ.get(k, d)) for k, d in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
    if a.cpu_smoke: dev = torch.device("cpu")
    else:
        dev = torch.device("cuda", local); torch.cuda.set_device(dev)
        if a.t4_memory: torch.cuda.set_per_process_memory_fraction(min(1.0, 14.7 * 2**30 / torch.cuda.get_device_properties(dev).total_memory), dev)
    if world > 1: torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    results = []
    for name, b in zip(a.models, a.batch + a.batch[-1:] * len(a.models)):
        try: r = run(name, b, a.steps, a.cpu_smoke, Path(a.cache), dev, world, rank)
        except torch.OutOfMemoryError as e: r = dict(model=name, batch=b, world=world, error=f"OOM: {str(e)[:200]}")
        if rank == 0: print(json.dumps(r), flush=True)
        results.append(r)
    if rank == 0 and a.out: Path(a.out).write_text(json.dumps(results, indent=1))
    if world > 1: torch.distributed.destroy_process_group()
    return results


if __name__ == "__main__":
    main()
