"""The course's inference contract, as a thin wrapper over abovqa.

    python inference.py --image_dir DIR --csv_path CSV [--model blip] [--model-path ID_OR_DIR] [--adapter DIR]

CSV columns: image_name (relative to DIR), question, answer. Writes results.csv in the current working directory:
the input columns plus `generated_answer` (the model's answer, normalised to one word). Rows whose image is missing
or unreadable get an empty answer and are counted on stderr; they never stop the run.
"""
from __future__ import annotations
import argparse, sys
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image_dir", required=True, help="folder holding the images named in the CSV")
    p.add_argument("--csv_path", required=True, help="CSV with image_name, question, answer")
    p.add_argument("--model", default="blip", help="model family: blip, vilt, llava, qwen")
    p.add_argument("--model-path", default=None, help="Hub id or folder (default: the family's base checkpoint)")
    p.add_argument("--adapter", default=None, help="LoRA adapter folder (a fine-tuned model)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--normalizer", default="short", help="answer normaliser of abovqa.metrics")
    p.add_argument("--quant", default=None, choices=["4bit", "8bit"])
    p.add_argument("--output", default="results.csv", help="output file (default: results.csv in the working directory)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    import pandas as pd
    from abovqa.evaluate import predict_table
    from abovqa.metrics import normalize_all
    from abovqa.models import get_adapter
    df = pd.read_csv(a.csv_path, dtype=str, keep_default_na=False)
    missing = [c for c in ("image_name", "question") if c not in df.columns]
    if missing: sys.exit(f"{a.csv_path}: missing column(s) {missing}; it has {list(df.columns)}")
    ad = get_adapter(a.model)
    model, proc = ad.load(a.model_path, quant=a.quant, adapter=a.adapter)
    table = df.assign(image_path=df.image_name)
    raw, skipped = predict_table(ad, model, proc, table, a.image_dir, a.batch_size, a.max_new_tokens)
    df["generated_answer"] = [a_ if r is not None else "" for r, a_ in zip(raw, normalize_all([r or "" for r in raw], a.normalizer))]
    df.to_csv(a.output, index=False)
    if len(skipped): print(f"{len(skipped)} image(s) missing or unreadable; their answers are empty", file=sys.stderr)
    print(f"wrote {Path(a.output).resolve()} ({len(df)} rows)")
    return 0


if __name__ == "__main__":
    from abovqa.cli import script_main   # the abovqa error boundary: one line per error, a traceback only with --debug
    sys.exit(script_main("inference.py", main))
