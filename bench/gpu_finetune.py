"""GPU benchmark of the fine-tuning set-ups: step time and peak memory (prepared for a GPU machine; CI never runs it).

Models are built from the real architectures' configs with random weights (no download needed):
  blip   BLIP-VQA-base (BlipConfig defaults = Salesforce/blip-vqa-base), fp32 weights + fp16 autocast, LoRA all-linear
  llava  LLaVA-1.5-7B (CLIP-L/336 + Llama-2-7B), 4-bit nf4 QLoRA, 576 image tokens + 40 text tokens per sample
  qwen   Qwen2.5-VL-7B, 8-bit QLoRA, a 252x252 image = 81 tokens (ABO small) + 40 text tokens per sample
The 7B models are saved once (fp16, ~15 GB each) under --cache and reloaded quantised, as `abovqa finetune` does.
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

import torch
from transformers import BlipConfig, LlavaConfig, Qwen2_5_VLConfig

from abovqa.finetune import add_lora, check_trainable_fp32
from abovqa.models import get_adapter

LLAVA_7B = dict(
    vision_config=dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                       num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768),
    text_config=dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096,
                     rms_norm_eps=1e-5),
    image_token_index=32000, pad_token_id=32001, vision_feature_layer=-2, vision_feature_select_strategy="default")
QWEN_7B = dict(
    text_config=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000, rms_norm_eps=1e-6,
                     rope_parameters=dict(rope_type="default", rope_theta=1e6, mrope_section=[16, 24, 24])),
    vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                       patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                       fullatt_block_indexes=[7, 15, 23, 31], in_chans=3, tokens_per_second=2),
    image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
TINY = {  # --cpu-smoke: the same code paths at toy size
    "llava": dict(vision_config=dict(LLAVA_7B["vision_config"], hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=28, projection_dim=64),
                  text_config=dict(LLAVA_7B["text_config"], hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=2)),
    "qwen": dict(text_config=dict(QWEN_7B["text_config"], hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=2, num_key_value_heads=1,
                                  rope_parameters=dict(rope_type="default", rope_theta=1e6, mrope_section=[4, 6, 6])),
                 vision_config=dict(QWEN_7B["vision_config"], depth=2, hidden_size=64, intermediate_size=128, num_heads=2,
                                    out_hidden_size=64, fullatt_block_indexes=[1])),
}


def config(name, tiny):
    if name == "blip":
        return BlipConfig(text_config=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128),
                          vision_config=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128,
                                             image_size=64)) if tiny else BlipConfig()
    base = LLAVA_7B if name == "llava" else QWEN_7B
    kw = {**base, **TINY[name]} if tiny else base
    return (LlavaConfig if name == "llava" else Qwen2_5_VLConfig)(**kw)


def build(name, tiny, cache: Path, dev):
    "(peft model, config) for `name`: random weights; 7B models saved once and reloaded quantised."
    cfg, ad = config(name, tiny), get_adapter(name)
    cls = {"blip": "BlipForQuestionAnswering", "llava": "LlavaForConditionalGeneration",
           "qwen": "Qwen2_5_VLForConditionalGeneration"}[name]
    import transformers
    Cls = getattr(transformers, cls)
    if name == "blip":
        model = Cls(cfg).to(dev)                                 # fp32 master weights, fp16 autocast
    else:
        path = cache / f"{name}{'-tiny' if tiny else ''}"
        if not (path / "config.json").exists():
            with torch.device(dev if dev.type == "cuda" else "cpu"):
                m = Cls._from_config(cfg, dtype=torch.float16 if dev.type == "cuda" else torch.float32)
            m.save_pretrained(path); del m
            if dev.type == "cuda": torch.cuda.empty_cache()
        quant = {"llava": "4bit", "qwen": "8bit"}[name]
        from abovqa.models import quant_config
        dt = torch.float16 if dev.type == "cuda" else torch.float32
        model = Cls.from_pretrained(path, dtype=dt, quantization_config=quant_config(quant, dt),
                                    device_map={"": dev.index or 0} if dev.type == "cuda" else None)
    pm = add_lora(model, ad.lora_config(), gradient_checkpointing=True)   # non-reentrant, as `abovqa finetune`
    check_trainable_fp32(pm)
    return pm, cfg


def batch(name, cfg, b, dev, text=40):
    "Synthetic inputs with the real shapes: image tokens, text tokens, labels on the last 2 tokens."
    g = torch.Generator().manual_seed(0)
    if name == "blip":
        s = cfg.vision_config.image_size
        ids = torch.randint(1000, 2000, (b, 12), generator=g)
        return dict(pixel_values=torch.randn(b, 3, s, s, generator=g), input_ids=ids, attention_mask=torch.ones_like(ids),
                    labels=torch.randint(1000, 2000, (b, 4), generator=g))
    if name == "llava":
        vc = cfg.vision_config; n_img = (vc.image_size // vc.patch_size) ** 2
        ids = torch.cat([torch.full((b, n_img), cfg.image_token_index), torch.randint(100, 30000, (b, text), generator=g)], 1)
        lab = torch.full_like(ids, -100); lab[:, -2:] = ids[:, -2:]
        return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=lab,
                    pixel_values=torch.randn(b, 3, vc.image_size, vc.image_size, generator=g))
    vc = cfg.vision_config; grid = 18 if vc.depth > 2 else 4              # 252 px -> 18x18 patches -> 81 tokens
    n_img = grid * grid // vc.spatial_merge_size ** 2
    img = torch.cat([torch.tensor([cfg.vision_start_token_id]), torch.full((n_img,), cfg.image_token_id),
                     torch.tensor([cfg.vision_end_token_id])])
    ids = torch.cat([img.repeat(b, 1), torch.randint(100, 150000, (b, text), generator=g)], 1)
    mm = (ids == cfg.image_token_id).int()
    lab = torch.full_like(ids, -100); lab[:, -2:] = ids[:, -2:]
    pp = 3 * vc.temporal_patch_size * vc.patch_size ** 2
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=lab, mm_token_type_ids=mm,
                pixel_values=torch.randn(b * grid * grid, pp, generator=g), image_grid_thw=torch.tensor([[1, grid, grid]] * b))


def run(name, b, steps, tiny, cache, dev, world, rank):
    model, cfg = build(name, tiny, cache, dev)
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
               trainable=sum(p.numel() for p in params))
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
