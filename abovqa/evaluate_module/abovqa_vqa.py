"""abovqa's VQA answer metrics as a Hugging Face `evaluate` module.

Load it offline from the installed package (no Hub access):

    from abovqa.metrics import load_evaluate_module     # or: evaluate.load(str(abovqa.metrics.evaluate_module_path()))
    m = load_evaluate_module()
    m.compute(predictions=["The color is green."], references=["green"], metrics=["exact_match", "token_f1"])

Every extra argument of `compute` (questions, normalizer, metrics, device, batch_size, bertscore_model,
bertscore_num_layers, bertscore_baseline_path, bart_model, st_model) goes to `abovqa.metrics.score`, and the result
is its summary dict (means, the normaliser used and the models used).
"""
import datasets
import evaluate

from abovqa.metrics import score

_DESCRIPTION = """Exact match and token F1 (SQuAD v1.1), ROUGE-L (rouge-score), BERTScore F1 (bert-score; raw and
rescaled with the baseline where one exists), BARTScore (mean of P = log p(pred|ref) and R = log p(ref|pred) per token,
BartForConditionalGeneration) and semantic cosine similarity (sentence-transformers) of short VQA answers, after
answer normalisation (blip, llava, qwen, vqa or the default short)."""

_CITATION = """@inproceedings{yuan2021bartscore, title={BARTScore: Evaluating Generated Text as Text Generation},
author={Yuan, Weizhe and Neubig, Graham and Liu, Pengfei}, booktitle={NeurIPS}, year={2021}}
@inproceedings{zhang2020bertscore, title={BERTScore: Evaluating Text Generation with BERT},
author={Zhang, Tianyi and Kishore, Varsha and Wu, Felix and Weinberger, Kilian Q. and Artzi, Yoav}, booktitle={ICLR}, year={2020}}"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: raw model answers (strings).
    references: ground-truth answers (strings).
    questions: optional questions (per-question-type rows are not returned here; use abovqa.metrics.score).
    normalizer: 'short' (default), 'blip', 'llava', 'qwen', 'vqa' or 'none'.
    normalize_references: apply the normaliser to the references too (default False: they are only cleaned).
    metrics: subset of exact_match, token_f1, rouge_l, bertscore_f1, bartscore, cosine (default: all six).
    device, batch_size, bertscore_model, bertscore_num_layers, bertscore_baseline_path, bart_model, st_model:
        model options, as in abovqa.metrics.score.
Returns:
    dict: normalizer, reference_normalizer, n, n_empty_predictions, the mean of each metric (plus bertscore_f1_rescaled, bartscore_p,
    bartscore_r) and the models used.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AbovqaVqa(evaluate.Metric):
    "Six answer metrics for short VQA answers (wraps `abovqa.metrics.score`)."

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            reference_urls=["https://github.com/neulab/BARTScore", "https://github.com/Tiiiger/bert_score"])

    def _compute(self, predictions, references, questions=None, normalizer="short", metrics=None,
                 normalize_references=False, **model_opts):
        return score(predictions, references, questions=questions, normalizer=normalizer, metrics=metrics,
                     normalize_references=normalize_references, **model_opts)[0]
