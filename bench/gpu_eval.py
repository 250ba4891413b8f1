"""Prepared GPU benchmark: answering throughput and peak memory of real-size VQA architectures, random weights.

    python bench/gpu_eval.py                      # on a CUDA machine: BLIP-base fp16, LLaVA-1.5-7B and Qwen2.5-VL-7B 4-bit
    python bench/gpu_eval.py --models qwen --n 32  # a subset / fewer samples
    python bench/gpu_eval.py --scale tiny          # the same code path with tiny dims, on CPU (a smoke test)

The Hub is unreachable, so the architectures are built from configs written out below (copied from the public
config.json of Salesforce/blip-vqa-base, llava-hf/llava-1.5-7b-hf and Qwen/Qwen2.5-VL-7B-Instruct), with the
real image processors' sizes and the offline tokenizers of `abovqa.testing` (small vocabularies; the embedding
matrices keep their real size). LLaVA and Qwen are saved to a scratch folder in fp16 and reloaded in 4-bit through
`abovqa.models` adapters, exactly as `abovqa evaluate --quant 4bit` loads them, with dtype fp16 as on a T4
(Qwen: fp32, unquantised vision tower). Random weights never emit eos, so every sample generates
`--max-new-tokens` tokens: a worst case for time. Prints a table; writes gpu_eval.json to $OUT (or bench/).
"""
import argparse, gc, json, os, shutil, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for k, v in dict(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false").items(): os.environ.setdefault(k, v)
import torch
from PIL import Image

# ---- real configs (public config.json values) ----
BLIP_BASE = dict(text=dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           max_position_embeddings=512),
                 vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                             image_size=384, patch_size=16),
                 projection_dim=512, image_text_hidden_size=256)
LLAVA_7B = dict(vision=dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                            num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768),
                text=dict(model_type="llama", vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5),
                image_size=336, patch_size=14)
QWEN_7B = dict(text=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4, max_position_embeddings=128000, rms_norm_eps=1e-6, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}),
               vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
               min_pixels=3136, max_pixels=12845056)

# ---- the same architectures, tiny (CPU smoke test; hidden 64 so 4-bit works; vocab grown to the real tokenizer's) ----
TINY = dict(
    blip=dict(text=dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                        max_position_embeddings=64),
              vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16),
              projection_dim=64, image_text_hidden_size=64),
    llava=dict(vision=dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, image_size=56, patch_size=14, projection_dim=64),
               text=dict(model_type="llama", vocab_size=1300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512),
               image_size=56, patch_size=14),
    qwen=dict(text=dict(vocab_size=2100, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=1, max_position_embeddings=1024,
                        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]}),
              vision=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=64, patch_size=14,
                          spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1]),
              min_pixels=3136, max_pixels=112 * 112))


def build_blip(c):
    from transformers import BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor
    from abovqa.testing import wordpiece_tokenizer
    tok = wordpiece_tokenizer(bos=True, max_length=c["text"]["max_position_embeddings"])
    s = c["vision"]["image_size"]
    proc = BlipProcessor(image_processor=BlipImageProcessor(size={"height": s, "width": s}), tokenizer=tok)
    cfg = BlipConfig(text_config=dict(c["text"], vocab_size=max(c["text"]["vocab_size"], len(tok)), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                      sep_token_id=tok.sep_token_id, eos_token_id=tok.sep_token_id),
                     vision_config=c["vision"], projection_dim=c["projection_dim"], image_text_hidden_size=c["image_text_hidden_size"])
    return BlipForQuestionAnswering, cfg, proc


def build_llava(c):
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from abovqa.testing import LLAVA_TEMPLATE, llama_tokenizer
    tok, s = llama_tokenizer(padding_side="left"), c["image_size"]
    proc = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s}),
                          tokenizer=tok, patch_size=c["patch_size"], num_additional_image_tokens=1,
                          vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE)
    cfg = LlavaConfig(vision_config=c["vision"],
                      text_config=dict(c["text"], vocab_size=max(c["text"]["vocab_size"], len(tok)), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
                      image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=(s // c["patch_size"]) ** 2,
                      vision_feature_select_strategy="default", vision_feature_layer=-2, projector_hidden_act="gelu")
    return LlavaForConditionalGeneration, cfg, proc


def build_qwen(c):
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)
    from abovqa.testing import QWEN_TEMPLATE, qwen2_tokenizer
    tok = qwen2_tokenizer(padding_side="left"); ids = tok.convert_tokens_to_ids
    kw = dict(min_pixels=c["min_pixels"], max_pixels=c["max_pixels"], patch_size=14, temporal_patch_size=2, merge_size=2)
    proc = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**kw), tokenizer=tok,
                               video_processor=Qwen2VLVideoProcessor(**kw), chat_template=QWEN_TEMPLATE)
    cfg = Qwen2_5_VLConfig(text_config=dict(c["text"], vocab_size=max(c["text"]["vocab_size"], len(tok)), bos_token_id=ids("<|endoftext|>"), eos_token_id=tok.eos_token_id,
                                            pad_token_id=tok.pad_token_id),
                           vision_config=c["vision"], image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                           vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    return Qwen2_5_VLForConditionalGeneration, cfg, proc


BUILDERS = dict(blip=build_blip, llava=build_llava, qwen=build_qwen)
PLAN = dict(blip=dict(quant=None, dtype="fp16", batch_size=64), llava=dict(quant="4bit", dtype="fp16", batch_size=16),
            qwen=dict(quant="4bit", dtype="fp16", batch_size=16))


def make_checkpoint(family, scale, folder):
    "Random-weight model + processor of `family` saved to `folder` (fp16 on GPU, fp32 on CPU)."
    cls, cfg, proc = BUILDERS[family](TINY[family] if scale == "tiny" else {"blip": BLIP_BASE, "llava": LLAVA_7B, "qwen": QWEN_7B}[family])
    cuda = torch.cuda.is_available()
    with torch.device("cuda" if cuda else "cpu"):
        model = cls._from_config(cfg, dtype=torch.float16 if cuda else torch.float32)
    model.generation_config.pad_token_id = proc.tokenizer.pad_token_id
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder); proc.save_pretrained(folder)
    del model; gc.collect(); torch.cuda.empty_cache() if cuda else None
    return n_params


def abo_like_images(n):
    "ABO small images: longest side 256, mixed aspect ratios."
    sizes = [(256, 256), (256, 192), (180, 256), (256, 256), (120, 120)]
    return [Image.new("RGB", sizes[i % len(sizes)], ((37 * i) % 255, (91 * i) % 255, (53 * i) % 255)) for i in range(n)]


def timed(fn):
    if torch.cuda.is_available(): torch.cuda.synchronize()
    t = time.perf_counter(); out = fn()
    if torch.cuda.is_available(): torch.cuda.synchronize()
    return time.perf_counter() - t, out


def bench(family, scale, n, max_new_tokens, work, batch_size=None):
    from abovqa.models import get_adapter
    plan = dict(PLAN[family]); plan["batch_size"] = batch_size or plan["batch_size"]
    cuda = torch.cuda.is_available()
    folder = Path(work)/family
    t_build, n_params = timed(lambda: make_checkpoint(family, scale, folder))
    if cuda: torch.cuda.reset_peak_memory_stats()
    ad = get_adapter(family)
    t_load, (model, proc) = timed(lambda: ad.load(folder, dtype=plan["dtype"] if cuda else "fp32", quant=plan["quant"]))
    mem_loaded = torch.cuda.memory_allocated() / 2**30 if cuda else None
    imgs, qs = abo_like_images(n), ["What is the color of the product?"] * n
    bs = plan["batch_size"]
    ad.predict(model, proc, imgs[:2], qs[:2], max_new_tokens=2)                           # warm-up
    t_b, outs = timed(lambda: [a for s in range(0, n, bs) for a in ad.predict(model, proc, imgs[s:s+bs], qs[s:s+bs], max_new_tokens=max_new_tokens)])
    k = min(8, n)
    t_1, _ = timed(lambda: [ad.predict(model, proc, [i], [q], max_new_tokens=max_new_tokens) for i, q in zip(imgs[:k], qs[:k])])
    row = dict(family=family, scale=scale, params_b=round(n_params / 1e9, 3), quant=plan["quant"], dtype=plan["dtype"] if cuda else "fp32",
               batch_size=bs, n=n, max_new_tokens=max_new_tokens, build_s=round(t_build, 1), load_s=round(t_load, 1),
               samples_per_s=round(n / t_b, 2), bs1_samples_per_s=round(k / t_1, 2), speedup_vs_bs1=round((n / t_b) / (k / t_1), 2),
               mem_loaded_gib=None if mem_loaded is None else round(mem_loaded, 2),
               peak_alloc_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
               peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
               answers_ok=len(outs) == n and all(isinstance(o, str) for o in outs))
    if family == "qwen": row["vision_dtype"] = str(next(model.model.visual.parameters()).dtype)
    del model; gc.collect(); torch.cuda.empty_cache() if cuda else None
    shutil.rmtree(folder, ignore_errors=True)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="blip,llava,qwen")
    p.add_argument("--scale", choices=["real", "tiny"], default="real")
    p.add_argument("--n", type=int, default=64, help="samples per model")
    p.add_argument("--batch-size", type=int, default=None, help="override the per-model batch size")
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--work", default=None, help="scratch folder for the random checkpoints (~17 GB for a 7B)")
    a = p.parse_args(argv)
    if a.scale == "real" and not torch.cuda.is_available(): sys.exit("--scale real needs a CUDA GPU (use --scale tiny on CPU)")
    info = dict(torch=torch.__version__, gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    import transformers, bitsandbytes
    info.update(transformers=transformers.__version__, bitsandbytes=bitsandbytes.__version__)
    rows = []
    work = Path(a.work or tempfile.mkdtemp(prefix="abovqa-gpu-eval-"))
    try:
        for fam in a.models.split(","):
            try: rows.append(bench(fam, a.scale, a.n, a.max_new_tokens, work, a.batch_size))
            except Exception as e: rows.append(dict(family=fam, error=f"{type(e).__name__}: {e}"[:500]))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(os.environ.get("OUT") or Path(__file__).parent)/"gpu_eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(info=info, rows=rows), indent=2))
    import pandas as pd
    print(pd.DataFrame(rows).to_string(index=False)); print("wrote", out)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
