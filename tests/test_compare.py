"`abovqa score` and `abovqa compare` through the console entry point (abovqa.cli.main)."
import json
import pandas as pd
import pytest
from abovqa.cli import main
from abovqa.compare import synthetic_run


def test_score_reproduces_a_known_table(tmp_path, capsys):
    "A course-style predictions file with known exact match under the course's rule (stripped strings) and under short."
    rows = []
    for i in range(40):
        ref = ["red", "wood", "round", "two"][i % 4]
        pred = {0: ref, 1: f" {ref} ", 2: ref.capitalize(), 3: "2" if ref == "two" else "blue"}[(i // 4) % 4]
        rows.append(dict(filename=f"im{i // 2}.jpg", question=f"Q{i % 2}?", answer=ref, generated_answer=pred))
    pd.DataFrame(rows).to_csv(tmp_path/"preds.csv", index=False)
    # none: rows with pred == ref or " ref " count; Capitalised and "2" vs "two" do not
    want_none = sum(r["generated_answer"].strip() == r["answer"] for r in rows) / len(rows)
    assert main(["score", str(tmp_path/"preds.csv"), "-o", str(tmp_path/"none"), "--normalizer", "none",
                 "--metrics", "exact_match,token_f1"]) == 0
    m = json.loads((tmp_path/"none"/"metrics.json").read_text())
    assert m["summary"]["exact_match"] == pytest.approx(want_none) == 0.6
    assert m["summary"]["exact_match_ci"][0] < 0.6 < m["summary"]["exact_match_ci"][1]
    out = capsys.readouterr().out
    assert "exact_match" in out and "[" in out
    assert main(["score", str(tmp_path/"preds.csv"), "-o", str(tmp_path/"short"), "--metrics", "em"]) == 0
    s = json.loads((tmp_path/"short"/"metrics.json").read_text())["summary"]
    assert s["exact_match"] == pytest.approx(34 / 40)     # case and "2" = "two" now match; "blue" stays wrong
    p = pd.read_csv(tmp_path/"short"/"predictions.csv")
    assert {"image_path", "question", "answer", "raw_output", "prediction", "correct", "exact_match"} <= set(p.columns)
    info = json.loads((tmp_path/"short"/"run.json").read_text())
    assert info["config"]["columns"]["image"] == "filename" and info["config"]["clusters"] == "images"

def test_score_errors_are_one_line(tmp_path, capsys):
    pd.DataFrame(dict(image_path=["a"], question=["q"], gt=["x"], prediction=["x"])).to_csv(tmp_path/"p.csv", index=False)
    assert main(["score", str(tmp_path/"p.csv"), "-o", str(tmp_path/"o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("abovqa score:") and "--reference-column" in err and "Traceback" not in err
    assert main(["score", str(tmp_path/"p.csv"), "-o", str(tmp_path/"o"), "--reference-column", "gt", "--normalizer", "x"]) == 2
    assert "--normalizer 'x'" in capsys.readouterr().err
    assert main(["score", str(tmp_path/"missing.csv"), "-o", str(tmp_path/"o")]) == 1
    assert not (tmp_path/"o").exists()

def test_compare_detects_a_real_gap_and_ties_an_identical_pair(tmp_path, capsys):
    a = synthetic_run(tmp_path/"a")
    b = synthetic_run(tmp_path/"b", fix=0.15, stage="fine-tuned")
    assert main(["compare", str(a), str(b), "-o", str(tmp_path/"cmp")]) == 0
    c = json.loads((tmp_path/"cmp"/"comparison.json").read_text())
    em = c["metrics"]["exact_match"]
    assert c["matched"] == 300 and c["unmatched_a"] == c["unmatched_b"] == 0
    assert em["diff"] > 0 and em["ci"][0] > 0 and em["p_value"] < 0.05
    assert c["mcnemar_exact_match"]["only_a"] == 0 and c["mcnemar_exact_match"]["p_value"] < 0.05
    assert main(["compare", str(a), str(a), "-o", str(tmp_path/"tie")]) == 0
    t = json.loads((tmp_path/"tie"/"comparison.json").read_text())
    for m, r in t["metrics"].items(): assert (r["diff"], r["ci"], r["p_value"]) == (0.0, [0.0, 0.0], 1.0), m
    assert main(["compare", str(a), str(tmp_path/"nothing"), "-o", str(tmp_path/"x")]) == 1
    assert "no predictions.csv" in capsys.readouterr().err

def test_judge_against_the_fake_server_resumes(tmp_path, capsys, monkeypatch):
    "abovqa judge: cost estimate first, verdicts from the fake Gemini, judge accuracy with an interval, a rerun sends nothing."
    from abovqa.fakegemini import FakeGemini, gen_response, request_text
    monkeypatch.setenv("GEMINI_API_KEY", "fake-key")
    pd.DataFrame(dict(image_path=["a", "a", "b", "c"], question=["Color?", "Shape?", "Color?", "Shape?"],
                      answer=["grey", "rectangular", "red", "round"], prediction=["gray", "oblong", "blue", "round"])
                 ).to_csv(tmp_path/"p.csv", index=False)
    assert main(["score", str(tmp_path/"p.csv"), "-o", str(tmp_path/"run"), "--metrics", "em"]) == 0
    same = {("grey", "gray"), ("rectangular", "oblong")}
    def judge(body):
        t = request_text(body)
        ref, ans = (t.split(k)[1].split("\n")[0] for k in ("Reference answer: ", "Model answer: "))
        return 200, gen_response("yes" if (ref, ans) in same else "no")
    with FakeGemini() as fake:
        fake.script(*[judge] * 5)
        args = ["judge", str(tmp_path/"run"), "-o", str(tmp_path/"j"), "--base-url", fake.url, "--model", "gemini-3.5-flash-lite"]
        assert main(args) == 0
        assert fake.counts["generate"] == 3
        assert main(args) == 0 and fake.counts["generate"] == 3     # resumed from the journal: nothing sent again
    out = capsys.readouterr().out
    assert "3 requests to send" in out and "estimated cost $" in out and "judge accuracy 0.750 [" in out
    res = json.loads((tmp_path/"j"/"judge.json").read_text())
    assert res["judge_accuracy"]["mean"] == 0.75 and res["exact_match_same_rows"]["mean"] == 0.25
