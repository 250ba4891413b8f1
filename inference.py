"""The course's inference contract, as a thin wrapper over abovqa.

    python inference.py --image_dir DIR --csv_path CSV [--family blip] [--model-path ID_OR_DIR] [--lora-dir DIR] [--gpus N]

CSV columns: image_name (relative to DIR), question, answer. Writes results.csv in the current working directory:
the input columns plus `generated_answer` (the model's answer, normalised to one word). Rows whose image is missing,
unreadable or refused by the processor get an empty answer and are counted on stderr; they never stop the run.
Questions are answered in length-grouped batches (output order unchanged); `--gpus N` answers with N processes,
one model copy per GPU (CPU processes when there is no GPU). A mistake in the options or inputs prints one line
and exits 2 (bad option) or 1 (missing file, column or folder).
"""
from __future__ import annotations
import argparse, os, sys, tempfile, uuid
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image_dir", required=True, help="folder holding the images named in the CSV")
    p.add_argument("--csv_path", required=True, help="CSV with image_name, question, answer")
    p.add_argument("--family", "--model", default="blip", help="model family: blip, vilt, llava, qwen")
    p.add_argument("--model-path", default=None, help="Hub id or folder (default: the family's base checkpoint)")
    p.add_argument("--lora-dir", "--adapter", default=None, help="LoRA adapter folder (a fine-tuned model)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--normalizer", default="short", help="answer normaliser of abovqa.metrics")
    p.add_argument("--quant", default=None, choices=["4bit", "8bit"])
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--gpus", type=int, default=1, help="data-parallel processes, one model copy per GPU")
    p.add_argument("--output", default="results.csv", help="output file (default: results.csv in the working directory)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p.parse_args(argv)


def read_table(a):
    "The input CSV, checked: the file, its columns and the image folder."
    import pandas as pd
    from abovqa.core import UserError
    if not Path(a.csv_path).is_file(): raise UserError(f"--csv_path {a.csv_path}: no such file")
    df = pd.read_csv(a.csv_path, dtype=str, keep_default_na=False)
    missing = [c for c in ("image_name", "question") if c not in df.columns]
    if missing: raise UserError(f"--csv_path {a.csv_path}: missing column(s) {missing}; it has {list(df.columns)}")
    if not len(df): raise UserError(f"--csv_path {a.csv_path}: no rows")
    if not Path(a.image_dir).is_dir(): raise UserError(f"--image_dir {a.image_dir}: no such folder")
    return df


def run(a) -> int:
    from abovqa.core import write_csv
    from abovqa.evaluate import EvalConfig, answer_rows, check_model_paths, check_options, read_journal
    from abovqa.metrics import normalize_all
    with tempfile.TemporaryDirectory(prefix="abovqa-inference-") as work:
        cfg = EvalConfig(family=a.family, model_path=a.model_path, lora_dir=a.lora_dir, data=a.csv_path, images=a.image_dir,
                         out=work, batch_size=a.batch_size, normalizer=a.normalizer, metrics=["em"],
                         max_new_tokens=a.max_new_tokens, dtype=a.dtype, quant=a.quant, gpus=a.gpus)
        check_options(cfg)
        df = read_table(a)
        check_model_paths(cfg.model_path, cfg.lora_dir)
        table = df.assign(image_path=df.image_name)
        answer_rows(cfg, table, work, list(range(len(table))), uuid.uuid4().hex[:12])
        answers, skips = read_journal(work)
    raw = [answers.get(i) for i in range(len(df))]
    norm = normalize_all([r or "" for r in raw], a.normalizer)
    df["generated_answer"] = [n if r is not None else "" for r, n in zip(raw, norm)]
    write_csv(df, a.output)
    skipped = sorted({s["row"]: s["skip"] for s in skips if s["row"] not in answers}.items())
    if skipped:
        eg = ", ".join(f"{df.image_name[i]} ({why})" for i, why in skipped[:3])
        print(f"{len(skipped)} of {len(df)} image(s) skipped, e.g. {eg}; their answers are empty", file=sys.stderr)
    if len(skipped) == len(df):
        print(f"inference.py: no image in --image_dir {a.image_dir} could be answered", file=sys.stderr)
        return 1
    print(f"wrote {Path(a.output).resolve()} ({len(df)} rows)")
    return 0


def main(argv=None) -> int:
    a = parse_args(argv)
    from abovqa.core import UserError
    try: return run(a)
    except UserError as e:
        if a.debug or os.environ.get("ABOVQA_DEBUG", "") not in ("", "0"): raise
        print(f"inference.py: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    from abovqa.cli import script_main   # the abovqa error boundary: one line per error, a traceback only with --debug
    sys.exit(script_main("inference.py", main))
