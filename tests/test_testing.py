"Tiny-model kit: every builder round-trips through a folder exactly as a Hub id would, and generates."
import json, random
import pytest, torch
from transformers import (AutoModelForImageTextToText, AutoModelForVisualQuestionAnswering, AutoProcessor,
                          AutoTokenizer, BartForConditionalGeneration)
from transformers.utils import logging as hf_logging
from abovqa import testing as T

hf_logging.disable_progress_bar()
COLOR_QS = ["What color is the product?", "What type of product is this?"]

@pytest.fixture(scope="module")
def images():
    return [T.square_image(T.PALETTE["red"]), T.square_image(T.PALETTE["blue"]), T.generic_image("circle", "green")]

def _gen(model, enc, n=5):
    with torch.no_grad(): return model.generate(**enc, max_new_tokens=n, do_sample=False)

def test_cache_and_seed(tmp_path):
    assert T.tiny_blip() == T.tiny_blip()                       # cached per process
    assert T.tiny_blip(seed=1) != T.tiny_blip()                 # keyed by arguments
    p = T.tiny_blip(tmp_path/"blip", seed=1)
    assert p == tmp_path/"blip" and (p/"config.json").exists() and (p/"model.safetensors").exists()
    a = AutoModelForVisualQuestionAnswering.from_pretrained(T.tiny_blip())
    b = AutoModelForVisualQuestionAnswering.from_pretrained(p)
    assert not torch.equal(a.text_encoder.embeddings.word_embeddings.weight, b.text_encoder.embeddings.word_embeddings.weight)

def test_builders_leave_global_rng_alone():
    state = torch.random.get_rng_state()
    T.tiny_vilt(seed=3)
    assert torch.equal(state, torch.random.get_rng_state())

def test_blip_roundtrip_generates(tmp_path, images):
    qs = ["What color is the product?", "what shape is it?", "how many?"]
    fresh, _ = T._build_blip(seed=0)
    d = T.tiny_blip(tmp_path/"m", seed=0)
    model, proc = AutoModelForVisualQuestionAnswering.from_pretrained(d), AutoProcessor.from_pretrained(d)
    assert type(model).__name__ == "BlipForQuestionAnswering"
    enc = proc(images=images, text=qs, padding=True, return_tensors="pt")
    out = _gen(model, enc)
    assert out.shape[0] == 3 and out.shape[1] > 1
    assert torch.equal(out, _gen(fresh, enc))
    assert all(isinstance(s, str) for s in proc.batch_decode(out, skip_special_tokens=True))
    assert model.config.vision_config.initializer_range == 0.02

def test_vilt_roundtrip(tmp_path, images):
    fresh, _ = T._build_vilt(seed=0)
    d = T.tiny_vilt(tmp_path/"v")
    model, proc = AutoModelForVisualQuestionAnswering.from_pretrained(d), AutoProcessor.from_pretrained(d)
    enc = proc(images=images, text=["What color is the product?"] * 3, padding=True, return_tensors="pt")
    with torch.no_grad(): a, b = model(**enc).logits, fresh(**enc).logits
    assert a.shape == (3, len(T.answer_vocab()))
    torch.testing.assert_close(a, b)
    assert [model.config.id2label[i] for i in range(a.shape[1])] == T.answer_vocab()

@pytest.mark.parametrize("name", ["llava", "qwen"])
def test_causal_vlm_left_padding_and_roundtrip(tmp_path, images, name):
    build, save = (T._build_llava, T.tiny_llava) if name == "llava" else (T._build_qwen, T.tiny_qwen)
    fresh, _ = build(seed=0)
    d = save(tmp_path/name)
    model, proc = AutoModelForImageTextToText.from_pretrained(d), AutoProcessor.from_pretrained(d)
    assert proc.tokenizer.padding_side == "left"                # survives save/load
    prompts = [T.vqa_prompt(proc, q) for q in ["What color is the product?", "What type of product is this?",
                                               "What material is it made of? Answer in one word."]]
    enc = proc(images=images, text=prompts, padding=True, return_tensors="pt")
    assert (enc.attention_mask[:, 0] == 0).any() and (enc.attention_mask[:, -1] == 1).all()   # padded on the left
    n = enc.input_ids.shape[1]
    batch = _gen(model, enc)[:, n:]
    assert torch.equal(batch, _gen(fresh, enc)[:, n:])          # identical after reload
    for i in range(3):                                           # batch == single
        one = proc(images=images[i:i+1], text=prompts[i:i+1], return_tensors="pt")
        assert torch.equal(_gen(model, one)[0, one.input_ids.shape[1]:], batch[i])

def test_llava_prompt_and_image_tokens():
    d = T.tiny_llava()
    proc, cfg = AutoProcessor.from_pretrained(d), json.loads((d/"config.json").read_text())
    p = T.vqa_prompt(proc, "What color is the product?")
    assert p == "USER: <image>\nWhat color is the product? ASSISTANT:"
    enc = proc(images=[T.square_image()], text=[p], return_tensors="pt")
    assert int((enc.input_ids == cfg["image_token_index"]).sum()) == 4
    assert enc.input_ids[0, 0] == proc.tokenizer.bos_token_id

@pytest.mark.parametrize("image_size,tokens", [(56, 4), (84, 9)])
def test_qwen_processor_image_tokens(image_size, tokens):
    d = T.tiny_qwen(image_size=image_size)
    proc = AutoProcessor.from_pretrained(d)
    assert type(proc).__name__ == "Qwen2_5_VLProcessor"
    enc = proc(images=[T.square_image(size=100)] * 2, text=[T.vqa_prompt(proc, "What shape is it?")] * 2,
               return_tensors="pt")
    side = image_size // 14
    assert enc.image_grid_thw.tolist() == [[1, side, side]] * 2
    image_id = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (enc.input_ids == image_id).sum(1).tolist() == [tokens, tokens]
    model = AutoModelForImageTextToText.from_pretrained(d)
    assert _gen(model, enc, 2).shape == (2, enc.input_ids.shape[1] + 2)

def test_tokenizers_cover_english():
    q = "Which material was this stylish lamp's shade made of, and how many legs does the chair have?"
    wp = T.bert_tokenizer(blip=True)
    ids = wp(q).input_ids
    assert wp.unk_token_id not in ids and len(ids) < 40 and len(wp) == 30524
    for w in T.answer_vocab(): assert wp.unk_token_id not in wp(w).input_ids, w
    for w in T.answer_vocab(): assert len(T.wordpiece_tokenizer(bos=True).tokenize(w)) == 1, w   # the base BLIP's toy vocab
    for tok in (T.llama_tokenizer(), T.qwen2_tokenizer()):
        s = q + " Größe: 5 cm — ok"
        assert tok.decode(tok(s).input_ids, skip_special_tokens=True) == s

def test_bart_loads_and_scores():
    d = T.tiny_bart()
    tok, model = AutoTokenizer.from_pretrained(d), BartForConditionalGeneration.from_pretrained(d)
    src, tgt = tok(["a red mug", "a blue chair"], padding=True, return_tensors="pt"), tok(["red", "blue"], padding=True, return_tensors="pt")
    with torch.no_grad():
        l1 = model(**src, labels=tgt.input_ids).loss
        l2 = BartForConditionalGeneration.from_pretrained(d)(**src, labels=tgt.input_ids).loss
    assert torch.isfinite(l1) and l1 == l2
    assert len(tok) == model.config.vocab_size == 30522

def test_minilm_path():
    from pathlib import Path
    p = Path(T.minilm_path())
    assert (p/"config.json").exists() and (p/"modules.json").exists()

def test_tiny_blip_base_knows_colours():
    d = T.tiny_blip_base()
    info = json.loads((d/"pretrain.json").read_text())
    model, proc = AutoModelForVisualQuestionAnswering.from_pretrained(d), AutoProcessor.from_pretrained(d)
    assert model.num_parameters() == info["params"]
    vocab = proc.tokenizer.get_vocab()
    for w in T.answer_vocab() + "what color shape pattern type material product is it the this of made".split():
        assert w in vocab, w
    rng = random.Random(0)
    reds = [T.generic_image("square", "red", "plain", rng=rng) for _ in range(8)]
    answers = T.blip_answers(model, proc, reds, ["what color is the shape?"] * 8)
    assert sum(a == "red" for a in answers) >= 4, answers       # chance is 1/10
    colours = list(T.PALETTE)
    squares = [T.generic_image("square", c, "plain", rng=rng) for c in colours]
    preds = T.blip_answers(model, proc, squares, ["What color is the product?"] * len(colours))
    assert sum(p == c for p, c in zip(preds, colours)) >= 4, list(zip(colours, preds))
