"Model adapters end to end on the tiny models of abovqa.testing: load, batch invariance, training batches, LoRA, 8-bit."
import pytest, torch
from PIL import Image
from abovqa import testing
from abovqa.models import get_adapter, ADAPTERS, QwenAdapter, to_model

FAMILIES = ["blip", "vilt", "llava", "qwen"]
QS = ["what color is the object?", "what shape is it?", "what color is it?", "is it red?", "what is it?"]
ANS = ["red", "square", "green", "yes", "mug"]


def _img(color, size):
    im = Image.new("RGB", (size, size), "white")
    im.paste(Image.new("RGB", (size // 2, size // 2), color), (size // 4, size // 4))
    return im

IMGS = [_img(c, s) for c, s in [("red", 48), ("blue", 64), ("green", 40), ("yellow", 56), ("purple", 30)]]


@pytest.fixture(scope="module")
def folders():
    return {f: getattr(testing, f"tiny_{f}")() for f in FAMILIES}


@pytest.fixture(scope="module")
def loaded(folders):
    return {f: get_adapter(f).load(folders[f]) for f in FAMILIES}


def test_registry():
    assert set(FAMILIES) <= set(ADAPTERS)
    with pytest.raises(KeyError, match="unknown model family"): get_adapter("gpt")


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_invariance(family, loaded):
    ad, (model, proc) = get_adapter(family), loaded[family]
    batched = ad.predict(model, proc, IMGS, QS, max_new_tokens=4)
    single = [ad.predict(model, proc, [im], [q], max_new_tokens=4)[0] for im, q in zip(IMGS, QS)]
    assert len(batched) == len(QS) and all(isinstance(s, str) for s in batched)
    assert batched == single
    assert ad.predict(model, proc, [], []) == []
    with pytest.raises(ValueError, match="2 images for 1 questions"): ad.predict(model, proc, IMGS[:2], QS[:1])


@pytest.mark.parametrize("family", ["llava", "qwen"])
def test_decoder_models_pad_left_and_decode_new_tokens(family, loaded):
    ad, (model, proc) = get_adapter(family), loaded[family]
    assert proc.tokenizer.padding_side == "left"
    batch = ad.inputs(proc, IMGS[:2], ["what?", "what color is the object in the picture?"])
    assert (batch["attention_mask"][:, -1] == 1).all() and (batch["attention_mask"][0, 0] == 0)
    out = ad.predict(model, proc, IMGS[:1], QS[:1], max_new_tokens=3)[0]
    assert "ASSISTANT" not in out and "assistant" not in out and QS[0] not in out
    ids = ad.generate(model, proc, to_model(ad.inputs(proc, IMGS[:1], QS[:1]), model), 3)
    assert 1 <= ids.shape[1] <= 3      # only the new tokens come back


@pytest.mark.parametrize("family", ["llava", "qwen"])
def test_chat_labels_keep_only_answer_and_eos(family, loaded):
    ad, (model, proc) = get_adapter(family), loaded[family]
    b = ad.train_batch(proc, IMGS, QS, ANS)
    tok = proc.tokenizer
    assert [tok.decode(l[l != -100]) for l in b["labels"]] == [a + tok.eos_token for a in ANS]
    assert not (b["labels"][b["input_ids"] == proc.image_token_id] != -100).any()
    assert not (b["labels"][b["attention_mask"] == 0] != -100).any()
    loss = model(**b).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_blip_labels(loaded):
    ad, (model, proc) = get_adapter("blip"), loaded["blip"]
    b = ad.train_batch(proc, IMGS, QS, ANS)
    assert (b["decoder_input_ids"][:, 0] == proc.tokenizer.bos_token_id).all()
    assert ((b["labels"] == -100) == (b["decoder_attention_mask"] == 0)).all()
    kept = [proc.tokenizer.decode(l[1:][l[1:] != -100], skip_special_tokens=True) for l in b["labels"]]
    assert kept == ANS
    assert torch.isfinite(model(**b).loss)


def test_vilt_soft_labels(loaded):
    ad, (model, proc) = get_adapter("vilt"), loaded["vilt"]
    known = list(proc.label2id)[:2]
    b = ad.train_batch(proc, IMGS[:3], QS[:3], [known[0], known[1], "not-a-label"])
    assert b["labels"].shape == (3, model.config.num_labels)
    assert b["labels"].sum(1).tolist() == [1.0, 1.0, 0.0]
    assert b["labels"][0, proc.label2id[known[0]]] == 1.0
    assert torch.isfinite(model(**b).loss)
    assert set(ad.predict(model, proc, IMGS, QS)) <= set(proc.label2id)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_adapter_folder_loads_on_top(family, folders, tmp_path):
    "Train-free check: a LoRA adapter with non-zero B, saved and loaded by `load(lora_dir=...)`, reproduces its loss."
    from peft import get_peft_model
    ad = get_adapter(family)
    base, proc = ad.load(folders[family])
    b = ad.train_batch(proc, IMGS[:3], QS[:3], ANS[:3] if family != "vilt" else list(proc.label2id)[:3])
    with torch.no_grad(): base_loss = base(**b).loss.item()
    pm = get_peft_model(base, ad.lora_config(dropout=0.0))
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n: p.normal_(0, 0.5)
    pm.eval()
    with torch.no_grad(): lora_loss = pm(**b).loss.item()
    pm.save_pretrained(tmp_path/"adapter")
    model, proc2 = ad.load(folders[family], lora_dir=tmp_path/"adapter")
    assert type(model).__name__.startswith("PeftModel")
    with torch.no_grad(): reloaded = model(**b).loss.item()
    assert reloaded == pytest.approx(lora_loss, abs=1e-5)
    assert abs(reloaded - base_loss) > 1e-4
    assert len(ad.predict(model, proc2, IMGS[:2], QS[:2], max_new_tokens=2)) == 2


def test_blip_lora_merge_keeps_tied_head(folders):
    "The tied LM head is excluded from LoRA, so merging leaves the word embeddings alone."
    from peft import get_peft_model
    ad = get_adapter("blip")
    base, proc = ad.load(folders["blip"])
    emb = base.text_decoder.bert.embeddings.word_embeddings.weight.detach().clone()
    pm = get_peft_model(base, ad.lora_config(dropout=0.0))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n: p.normal_(0, 0.5)
    b = ad.train_batch(proc, IMGS[:2], QS[:2], ANS[:2])
    pm.eval()
    with torch.no_grad(): before = pm(**b).loss.item()
    merged = pm.merge_and_unload()
    with torch.no_grad(): after = merged(**b).loss.item()
    assert after == pytest.approx(before, abs=1e-5)
    assert torch.equal(merged.text_decoder.bert.embeddings.word_embeddings.weight, emb)


@pytest.mark.parametrize("family", ["blip", "llava", "qwen"])
def test_8bit_loading_on_cpu(family, folders):
    import bitsandbytes as bnb
    ad = get_adapter(family)
    model, proc = ad.load(folders[family], quant="8bit")
    assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules())
    out = ad.predict(model, proc, IMGS[:2], QS[:2], max_new_tokens=2)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)


def test_4bit_loading_on_cpu():
    import bitsandbytes as bnb
    ad = get_adapter("llava")
    model, proc = ad.load(testing.tiny_llava(hidden=64), quant="4bit")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert len(ad.predict(model, proc, IMGS[:2], QS[:2], max_new_tokens=2)) == 2


def test_qwen_fp16_keeps_vision_fp32_and_unquantised(folders):
    "The T4 safeguard: fp16 compute, fp32 vision tower left out of 8-bit quantisation."
    import bitsandbytes as bnb
    model, proc = QwenAdapter().load(folders["qwen"], dtype="fp16", quant="8bit")
    vis = model.model.visual
    assert {p.dtype for p in vis.parameters()} == {torch.float32}
    assert not any(isinstance(m, bnb.nn.Linear8bitLt) for m in vis.modules())
    assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in model.model.language_model.modules())
    assert model.model.language_model.embed_tokens.weight.dtype == torch.float16


def test_qwen_pixels_bounded(folders):
    _, proc = QwenAdapter(max_pixels=28 * 28).load(folders["qwen"])
    assert proc.image_processor.size["longest_edge"] == 28 * 28
    assert proc.image_processor.size["shortest_edge"] <= 28 * 28


@pytest.mark.parametrize("family", FAMILIES)
def test_fp16_answers_with_pixels_in_tower_dtype(family, folders):
    "The T4 path on the CPU: fp16 weights, pixel_values in the vision tower's dtype (Qwen: fp32 tower, fp16 text)."
    ad = get_adapter(family)
    model, proc = ad.load(folders[family], dtype="fp16")
    tower = {"blip": lambda m: m.vision_model, "vilt": lambda m: m.vilt.embeddings.patch_embeddings,
             "llava": lambda m: m.model.vision_tower, "qwen": lambda m: m.model.visual}[family](model)
    batch = to_model(ad.inputs(proc, IMGS[:2], QS[:2]), model)
    assert batch["pixel_values"].dtype == next(tower.parameters()).dtype
    assert batch["input_ids"].dtype == torch.long
    if family == "qwen": assert model.model.language_model.embed_tokens.weight.dtype == torch.float16
    else: assert next(tower.parameters()).dtype == torch.float16
    out = ad.predict(model, proc, IMGS[:2], QS[:2], max_new_tokens=2)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
