"abovqa.metrics: normalisers, the six metrics against their reference implementations, score(), the evaluate module."
import random, re, string
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from abovqa import metrics as M
from abovqa.testing import minilm_path, tiny_bart

torch.set_num_threads(1)


# ---------------------------------------------------------------- fixtures (each model is loaded once per module)
@pytest.fixture(scope="module")
def minilm(): return minilm_path()

@pytest.fixture(scope="module")
def bart(): return str(tiny_bart())

def _pairs(n, seed=0):
    "Random answer pairs with case, punctuation, articles, numbers, repeats and sentences."
    rng = random.Random(seed)
    words = "red Green blue wood metal plastic round square the a an is it colour appears made of dark 3 two yes No".split()
    punct = ["", ".", "!", ",", "?", "'s", " -"]
    def text(k): return " ".join(rng.choice(words) + rng.choice(punct) for _ in range(rng.randint(0, k)))
    return [text(6) for _ in range(n)], [text(2) for _ in range(n)]


# ---------------------------------------------------------------- normalisers, hand-worked
@pytest.mark.parametrize("name,raw,want", [
    ("blip", "Bird flying", "bird"), ("blip", "a dolphin", "dolphin"), ("blip", " Dark-Green!", "dark"),
    ("blip", "The color is green.", "color"), ("blip", "3 chairs", "3"), ("blip", "...", ""),
    ("llava", "Answer: A dolphin", "dolphin"), ("llava", "dolphin!", "dolphin"), ("llava", "answer: answer: red", "red"),
    ("llava", "  42 chairs", "chairs"), ("llava", "Probably green.", "probably"), ("llava", None, ""),
    ("qwen", "The color is green.", "the"), ("qwen", "Green, green GREEN", "green"), ("qwen", "123 !!", "unknown"),
    ("qwen", "", "unknown"), ("qwen", "it's red", "it"),
    ("vqa", "Two.", "2"), ("vqa", "None", "0"), ("vqa", "The dog's bowl", "dog's bowl"), ("vqa", "dont", "don't"),
    ("vqa", "3.5", "3.5"), ("vqa", "black-and-white", "black and white"), ("vqa", "yes, it is", "yes it is"),
    ("vqa", "1,000 (approx)", "1000 approx"), ("vqa", "An apple\tpie\n", "apple pie"), ("vqa", "red/blue", "red blue"),
    ("short", "The color is green.", "green"), ("short", "Yes, it is.", "yes"),
    ("short", "It appears to be made of wood", "wood"), ("short", "green", "green"), ("short", "GREEN!", "green"),
    ("short", "No, the mug is red.", "no"), ("short", "Probably yes", "yes"), ("short", "most likely red", "red"),
    ("short", "dark blue color", "blue"), ("short", "a shade of red", "red"), ("short", "it appears blue", "blue"),
    ("short", "The mug is red.", "red"), ("short", "There are 3 chairs.", "3"), ("short", "There is one chair.", "1"),
    ("short", "The image shows a chair that is black.", "black"), ("short", "It has a round shape.", "round"),
    ("short", "Answer: Metal", "metal"), ("short", "The answer is: metal", "metal"), ("short", "A-frame", "a-frame"),
    ("short", "The material of the chair appears to be leather.", "leather"), ("short", "dark", "dark"),
    ("short", "It\u2019s made of plastic", "plastic"), ("short", None, ""), ("short", "", ""),
])
def test_normalisers(name, raw, want):
    assert M.normalize(raw, name) == want


def test_every_normaliser_is_named_and_vectorised():
    assert set(M.NORMALIZERS) == {"blip", "llava", "qwen", "vqa", "short"}
    texts = ["The color is green.", None, "Two.", float("nan"), "The color is green."]
    for name in [*M.NORMALIZERS, "none"]:
        assert M.normalize_all(texts, name) == [M.normalize(t, name) for t in texts]
    with pytest.raises(ValueError, match="unknown normalizer 'gpt'"):
        M.normalize("x", "gpt")


# ---------------------------------------------------------------- SQuAD v1.1 oracle (the official script's functions)
def _squad_normalize(s):
    def remove_articles(text): return re.sub(r"\b(a|an|the)\b", " ", text)
    def white_space_fix(text): return " ".join(text.split())
    def remove_punc(text): return "".join(ch for ch in text if ch not in set(string.punctuation))
    return white_space_fix(remove_articles(remove_punc(s.lower())))

def _squad_f1(prediction, ground_truth):
    p, g = _squad_normalize(prediction).split(), _squad_normalize(ground_truth).split()
    common = Counter(p) & Counter(g)
    num_same = sum(common.values())
    if num_same == 0: return 0
    precision, recall = num_same / len(p), num_same / len(g)
    return 2 * precision * recall / (precision + recall)

def test_exact_match_and_f1_hand_worked():
    assert M.exact_match("The Green!", "green") == 1.0 and M.exact_match("greens", "green") == 0.0
    assert M.token_f1("dark green", "green") == pytest.approx(2 / 3)       # P 1/2, R 1
    assert M.token_f1("red and green", "green red") == pytest.approx(0.8)  # P 2/3, R 1
    assert M.token_f1("red red", "red") == pytest.approx(2 / 3)            # multiset overlap 1: P 1/2, R 1
    assert M.token_f1("the", "a") == 0.0 and M.token_f1("", "") == 0.0 and M.exact_match("", "the") == 1.0

def test_lexical_agree_with_squad_and_rouge_score():
    from rouge_score import rouge_scorer
    preds, refs = _pairs(2000)
    lex = M.lexical_scores(preds, refs)
    assert lex.exact_match.tolist() == [float(_squad_normalize(p) == _squad_normalize(r)) for p, r in zip(preds, refs)]
    np.testing.assert_allclose(lex.token_f1, [_squad_f1(p, r) for p, r in zip(preds, refs)], atol=1e-12)
    for stem in (False, True):
        sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem)
        want = [sc.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)]
        np.testing.assert_allclose(M.rouge_l(preds, refs, use_stemmer=stem), want, atol=1e-12)
    assert 0 < lex.token_f1.mean() < 1 and 0 < lex.exact_match.mean() < 1   # the data exercise both outcomes

def test_rouge_l_hand_worked():
    # LCS("a red mug", "red mug") = 2 tokens: P 2/3, R 1 -> F 0.8; rouge-score keeps articles
    np.testing.assert_allclose(M.rouge_l(["a red mug", "mug red", "blue"], ["red mug", "red mug", "red"]), [0.8, 0.5, 0.0])


# ---------------------------------------------------------------- model metrics against the packages called directly
def test_cosine_agrees_with_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer
    preds, refs = ["green", "olive green", "a wooden chair", "green", "yes"], ["green", "green", "wood", "red", "no"]
    m = SentenceTransformer(minilm, device="cpu")
    want = m.similarity_pairwise(m.encode(preds, convert_to_tensor=True), m.encode(refs, convert_to_tensor=True))
    got = M.cosine(preds, refs, model=minilm, device="cpu")
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    assert got[0] == pytest.approx(1.0, abs=1e-5) and got[1] > got[3]

def test_default_sentence_model_is_the_packaged_minilm(minilm):
    assert M.default_st_model() == minilm

def test_bertscore_agrees_with_bert_score(minilm):
    import bert_score
    preds, refs = ["green", "a red mug", "made of wood", "green"], ["green", "red", "wood", "blue"]
    P, R, F = bert_score.score(preds, refs, model_type=minilm, num_layers=6, device="cpu")
    got = M.bertscore(preds, refs, model=minilm, num_layers=6, device="cpu")
    np.testing.assert_allclose(got[["bertscore_p", "bertscore_r", "bertscore_f1"]].values,
                               torch.stack([P, R, F], 1).numpy(), atol=1e-6)
    assert got.bertscore_f1_rescaled.isna().all()   # no baseline ships for MiniLM

def test_bertscore_rescaling_agrees_with_bert_score(minilm, tmp_path):
    import bert_score
    base = tmp_path/"minilm.tsv"                     # bert-score's format: row = layer, columns P, R, F
    pd.DataFrame({"LAYER": range(7), "P": 0.5, "R": 0.55, "F": np.linspace(0.3, 0.6, 7)}).to_csv(base, index=False)
    preds, refs = ["green", "a red mug"], ["green", "blue"]
    _, _, F = bert_score.score(preds, refs, model_type=minilm, num_layers=6, lang="en", rescale_with_baseline=True,
                               baseline_path=str(base))
    got = M.bertscore(preds, refs, model=minilm, num_layers=6, device="cpu", baseline_path=str(base))
    np.testing.assert_allclose(got.bertscore_f1_rescaled.astype(float), F.numpy(), atol=1e-6)
    np.testing.assert_allclose(got.bertscore_f1_rescaled.astype(float), (got.bertscore_f1 - 0.6) / 0.4, atol=1e-6)

def test_bertscore_empty_side_scores_zero_and_local_folder_needs_layers(minilm):
    got = M.bertscore(["", "green", "green"], ["red", "", "green"], model=minilm, num_layers=6, device="cpu")
    assert got.bertscore_f1.tolist()[:2] == [0.0, 0.0] and got.bertscore_f1[2] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="bertscore_num_layers"):
        M.bertscore(["a"], ["b"], model=minilm, device="cpu")

def test_roberta_large_has_a_baseline_at_layer_17():
    from bert_score.utils import model2layers
    assert model2layers["roberta-large"] == 17
    import bert_score, pathlib
    assert (pathlib.Path(bert_score.__file__).parent/"rescale_baseline/en/roberta-large.tsv").is_file()


# ---------------------------------------------------------------- BARTScore plumbing on a tiny random BART
PAIRS = (["green", "a red mug with a long curved handle", "wood", "yes", "it appears to be made of brushed metal",
          "", "3", "plastic"] * 2,
         ["green", "red", "metal table legs", "no", "metal", "red", "three chairs around a round table", "wood"] * 2)

def test_bartscore_formula_matches_the_models_own_loss(bart):
    from transformers import AutoTokenizer, BartForConditionalGeneration
    tok, model = AutoTokenizer.from_pretrained(bart), BartForConditionalGeneration.from_pretrained(bart).eval()
    src, tgt = "a red mug with a handle", "red"
    with torch.no_grad():
        loss = model(input_ids=tok([src], return_tensors="pt").input_ids, labels=tok([tgt], return_tensors="pt").input_ids).loss
    assert M.bart_loglik([src], [tgt], model=bart, device="cpu")[0] == pytest.approx(-loss.item(), abs=1e-5)

def test_bartscore_direction(bart):
    p, r = PAIRS
    s = M.bartscore(p, r, model=bart, device="cpu")
    assert not np.allclose(s.bartscore_p, s.bartscore_r)
    np.testing.assert_allclose(s.bartscore, (s.bartscore_p + s.bartscore_r) / 2)
    sw = M.bartscore(r, p, model=bart, device="cpu")
    np.testing.assert_allclose(sw.bartscore_p, s.bartscore_r, atol=1e-6)
    np.testing.assert_allclose(sw.bartscore_r, s.bartscore_p, atol=1e-6)
    np.testing.assert_allclose(s.bartscore_p, M.bart_loglik(r, p, model=bart, device="cpu"), atol=1e-6)  # P = ref -> pred
    assert (s.values < 0).all()

def test_bartscore_padding_and_batch_invariance(bart):
    p, r = PAIRS
    one = M.bart_loglik(r, p, model=bart, device="cpu", batch_size=1)
    eight = M.bart_loglik(r, p, model=bart, device="cpu", batch_size=8)
    np.testing.assert_allclose(eight, one, atol=1e-5)
    np.testing.assert_allclose(M.bartscore(p, r, model=bart, device="cpu", batch_size=3).values,
                               M.bartscore(p, r, model=bart, device="cpu", batch_size=16).values, atol=1e-5)
    np.testing.assert_allclose(one[:8], one[8:], atol=1e-5)   # the repeated half scores the same in other batches

def test_models_are_loaded_once(bart):
    M.bart_loglik(["a"], ["b"], model=bart, device="cpu")
    hits = M.load_bart.cache_info().hits
    M.bart_loglik(["a"], ["b"], model=bart, device="cpu")
    assert M.load_bart.cache_info().hits == hits + 1


# ---------------------------------------------------------------- score(), breakdowns, answer form
PREDS = ["The color is green.", "Yes, it is.", "It appears to be made of wood", "blue", None, "Round."]
REFS = ["green", "yes", "Wood", "green", "red", "round"]
QS = ["What color is the mug?", "Is it a chair?", "What is it made of?", "What colour is the lamp?",
      "Is it red?", "What shape is the bottle?"]

def _opts(minilm, bart): return dict(device="cpu", bertscore_model=minilm, bertscore_num_layers=6, bart_model=bart)

def test_score_all_six(minilm, bart):
    summary, rows = M.score(PREDS, REFS, questions=QS, **_opts(minilm, bart))
    assert summary["normalizer"] == "short" and summary["n"] == 6 and summary["n_empty_predictions"] == 1
    for m in M.METRICS: assert m in summary and m in rows
    assert summary["exact_match"] == pytest.approx(4 / 6)
    assert rows.prediction_norm.tolist() == ["green", "yes", "wood", "blue", "", "round"]
    assert rows.reference_norm.tolist() == ["green", "yes", "wood", "green", "red", "round"]
    for m in M.METRICS: assert summary[m] == pytest.approx(rows[m].mean())
    assert summary["bertscore_f1_rescaled"] is None and summary["bertscore_num_layers"] == 6
    assert summary["st_model"] == minilm and summary["bart_model"] == bart
    # the model metrics are those of the normalised texts
    np.testing.assert_allclose(rows.cosine, M.cosine(rows.prediction_norm, rows.reference_norm, minilm, "cpu"), atol=1e-5)
    assert rows.cosine[0] == pytest.approx(1.0, abs=1e-5) and rows.bertscore_f1[0] == pytest.approx(1.0, abs=1e-5)

def test_score_normaliser_and_metric_choice():
    s_short, _ = M.score(PREDS, REFS, metrics=["em", "f1"])
    s_qwen, rows = M.score(PREDS, REFS, normalizer="qwen", metrics=["exact_match"])
    assert s_qwen["normalizer"] == "qwen" and list(rows.columns)[-1] == "exact_match" and "token_f1" not in s_qwen
    assert s_short["exact_match"] > s_qwen["exact_match"]
    s_vqa, rows = M.score(["Two."], ["two"], normalizer="vqa", metrics="exact_match")
    assert rows.reference_norm[0] == "2" and s_vqa["exact_match"] == 1.0 and s_vqa["reference_normalizer"] == "vqa"
    assert s_short["reference_normalizer"] == "clean+numbers"   # short writes number words as digits on both sides
    s, rows = M.score(["It is dark green.", "Black and white"], ["Dark green", "black and white"], metrics="em")
    assert s["exact_match"] == 0.0 and rows.prediction_norm.tolist() == ["green", "black"]
    s, rows = M.score(["It is dark green.", "Black and white"], ["Dark green", "black and white"], metrics="em",
                      normalize_references=True)
    assert s["exact_match"] == 1.0 and s["reference_normalizer"] == "short" and rows.reference_norm.tolist() == ["green", "black"]
    with pytest.raises(ValueError, match="unknown metrics"): M.score(PREDS, REFS, metrics=["bleu"])
    with pytest.raises(ValueError, match="6 predictions but 5 references"): M.score(PREDS, REFS[:5])
    with pytest.raises(ValueError, match="2 questions"): M.score(PREDS, REFS, questions=QS[:2])

def test_breakdown():
    _, rows = M.score(PREDS, REFS, questions=QS, metrics=M.LEXICAL)
    bd = M.breakdown(rows)
    assert bd.index.tolist() == ["color", "material", "shape", "yes/no"] and bd.n.sum() == len(PREDS)
    assert bd.loc["color", "exact_match"] == 0.5 and bd.loc["yes/no", "exact_match"] == 0.5
    assert bd.loc["shape", "token_f1"] == 1.0
    with pytest.raises(ValueError, match="questions="): M.breakdown(M.score(PREDS, REFS, metrics="em")[1])

def test_answer_form():
    raw = ["green", "dark green", "yes", "Yes, it is.", "white", "white", None, "White!"]
    refs = ["green", "green", "no", "yes", "black", "blue", "red", "grey"]
    af = M.answer_form(raw, refs, M.normalize_all(raw))
    assert af["n"] == 8 and af["single_word_share"] == 5 / 8 and af["multi_word_share"] == 2 / 8
    assert af["empty_share"] == 1 / 8 and af["mean_words"] == pytest.approx(10 / 8)
    assert af["top_wrong"][0] == ["white", 3] and af["wrong_share"] == 5 / 8
    assert M.answer_form([], [], [])["n"] == 0


# ---------------------------------------------------------------- the HF evaluate module
def test_evaluate_module_loads_offline_and_matches_score(minilm, bart, monkeypatch):
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    assert M.evaluate_module_path().is_file()
    m = M.load_evaluate_module()
    got = m.compute(predictions=PREDS[:4], references=REFS[:4], questions=QS[:4], normalizer="short", **_opts(minilm, bart))
    want, _ = M.score(PREDS[:4], REFS[:4], questions=QS[:4], **_opts(minilm, bart))
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == (pytest.approx(v, abs=1e-6) if isinstance(v, float) else v), k
    import evaluate
    lex = evaluate.load(str(M.evaluate_module_path())).compute(predictions=["Two."], references=["2"], normalizer="vqa",
                                                               metrics=["exact_match"])
    assert lex["exact_match"] == 1.0 and lex["normalizer"] == "vqa"
