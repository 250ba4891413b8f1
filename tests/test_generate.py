"abovqa.generate end to end against the fake Gemini server: parsing, retries, quotas, kill -9 + resume, secrets, batch."
import base64, json, os, random, signal, subprocess, time
from pathlib import Path
import pandas as pd
import pytest
import abovqa.quota
from abovqa.fakegemini import FakeGemini, toy_curated, error_body
from abovqa.gemini import PROMPTS, GenParams, load_jobs, make_client, parse_reply, cost_usd
from abovqa.generate import generate, generate_cli, LOCK_NAME
from abovqa.quota import RetryPolicy, Journal, DONE
from abovqa.cli import main
from abovqa.fixtures import cli_argv, run_cli

KEY = "AIzaTESTKEY-0123456789-do-not-leak"
FAST = RetryPolicy(max_attempts=6, base_s=0.01, cap_s=0.05)

@pytest.fixture
def toy(tmp_path):
    csv, small = toy_curated(tmp_path/"cur", n=8)
    return csv, small, tmp_path

def run_gen(fake, csv, small, out, **kw):
    kw = dict(client=make_client(KEY, fake.url, timeout_s=kw.pop("timeout_s", 5)), workers=3, rpm=None, rpd=None, policy=FAST,
              hf=False, progress=False) | kw
    return generate(csv, small, out, **kw)

# --- parsing ---------------------------------------------------------------------------------------------------------
CORPUS = [  # (reply, structured, expected pairs)
    ("question,answer\nWhat color is the mug?,red\nWhat shape is it?,round", False,
     [("What color is the mug?", "red"), ("What shape is it?", "round")]),
    ("What color is the mug?, red\nIs it striped?, no", False, [("What color is the mug?", "red"), ("Is it striped?", "no")]),
    ("```csv\nquestion, answer\nWhat material is the chair?, wood\n```", False, [("What material is the chair?", "wood")]),
    ("Sure! Here are the questions:\n\n```\nWhat color is it?,blue\n```\nLet me know if you need more.", False,
     [("What color is it?", "blue")]),
    ('"What is it, a cup or a mug?","mug"\n"How many handles, if any?", "1"', False,
     [("What is it, a cup or a mug?", "mug"), ("How many handles, if any?", "1")]),
    ("What is it, a cup or a mug?, mug", False, [("What is it, a cup or a mug?", "mug")]),
    ("1. What color is the lamp?, black\n2) What shape is the base?, round.\n- Is it on?, yes", False,
     [("What color is the lamp?", "black"), ("What shape is the base?", "round"), ("Is it on?", "yes")]),
    ("| Question | Answer |\n|----------|--------|\n| What color is the shoe? | white |", False, [("What color is the shoe?", "white")]),
    ("**Question:** What is the bottle made of? **Answer:** glass", False, [("What is the bottle made of?", "glass")]),
    ("Here is the CSV, as requested:\nquestion,answer\nWhich pattern does it have?,striped\nNote: answers verified.", False,
     [("Which pattern does it have?", "striped")]),
    ("I'm sorry, but I can't help with that.", False, []),
    ("", False, []),
    ('[{"question": "What color is it?", "answer": "green"}, {"question": "Is it round?", "answer": "yes"}]', True,
     [("What color is it?", "green"), ("Is it round?", "yes")]),
    ('```json\n{"questions": [{"question": "What is it?", "answer": "lamp"}]}\n```', True, [("What is it?", "lamp")]),
    ('[{"question": "What color is it?", "answer": "red"}, {"question": "Is it tal', True, [("What color is it?", "red")]),
    ("What color is it?,red", True, [("What color is it?", "red")]),  # asked for JSON, got CSV
    ('[{"question": "Shape?", "answer": "oval"}]', False, [("Shape?", "oval")]),  # asked for CSV, got JSON
]

@pytest.mark.parametrize("reply,structured,want", CORPUS)
def test_parse_messy_replies(reply, structured, want):
    assert parse_reply(reply, structured) == want

# --- the request, retries, blocked replies -------------------------------------------------------------------------
def test_request_carries_image_metadata_prompt_and_params(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        run_gen(fake, csv, small, tmp/"out", limit=1)
        req = fake.requests[0]
    cur = pd.read_csv(csv)
    parts = req["body"]["contents"][0]["parts"]
    img = base64.urlsafe_b64decode(parts[0]["inlineData"]["data"] + "==")
    assert img == (small/cur.image_path[0]).read_bytes()
    assert cur.metadata[0] in parts[1]["text"] and parts[2]["text"] == PROMPTS["prompt3"]
    g = req["body"]["generationConfig"]
    assert (g["seed"], g["maxOutputTokens"]) == (42, 256) and list(g["thinkingConfig"].values()) == ["MINIMAL"]
    assert not {"temperature", "topK", "topP", "candidateCount"} & set(g)   # the default model fixes its sampling
    assert req["path"] == "/v1beta/models/gemini-3.5-flash-lite:generateContent"
    assert req["headers"]["x-goog-api-key"] == KEY and KEY not in json.dumps(req["body"])

def test_structured_prompt_sends_schema(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        s = run_gen(fake, csv, small, tmp/"out", params=GenParams(prompt="prompt3_json"), limit=2)
        g = fake.bodies()[0]["generationConfig"]
    assert g["responseMimeType"] == "application/json" and g["responseSchema"]["type"] == "ARRAY"
    assert s["pairs"]["kept"] == 2 * 5 and s["status"] == "complete"

def test_retries_on_429_5xx_timeouts_and_dropped_connections(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        fake.script("503", "429-minute", ("status", 500), ("slow", 1.5), "drop", "429-bare", ("status", 502))
        s = run_gen(fake, csv, small, tmp/"out", workers=1, limit=2, timeout_s=0.5, policy=RetryPolicy(10, 0.01, 0.05))
        n = fake.counts["generate"]
    assert s["status"] == "complete" and s["images_done"] == 2
    assert n == 2 + 7  # every scripted failure cost exactly one extra request
    assert s["this_run"]["requests"] == {"ok": 2}

def test_gives_up_after_max_attempts_and_retries_next_run(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        fake.script(*["503"] * 3)
        s = run_gen(fake, csv, small, tmp/"out", workers=1, limit=1, policy=RetryPolicy(3, 0.01, 0.02))
        assert (s["status"], s["images_done"], fake.counts["generate"]) == ("incomplete", 0, 3)
        s = run_gen(fake, csv, small, tmp/"out", workers=1, limit=1)
    assert (s["status"], s["images_done"]) == ("complete", 1)

def test_blocked_empty_and_malformed_replies_are_recorded(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        fake.script("blocked-prompt", "blocked-safety", "max-tokens", "empty", "malformed")
        s = run_gen(fake, csv, small, tmp/"out", workers=1, limit=6)
        again = run_gen(fake, csv, small, tmp/"out", workers=1, limit=6)
        n = fake.counts["generate"]
    assert s["replies"] == {"blocked": 2, "empty": 2, "ok": 2} and s["unparsed_replies"] == 1
    assert s["status"] == "complete" and n == 6  # recorded as final: the rerun asked nothing
    assert again["pairs"] == s["pairs"]

# --- quotas ----------------------------------------------------------------------------------------------------------
def test_daily_quota_stops_cleanly_and_resumes(toy, capsys):
    csv, small, tmp = toy
    with FakeGemini(rpd=3) as fake:
        os.environ["GEMINI_API_KEY"] = KEY
        try:
            argv = [str(csv), "--images", str(small), "-o", str(tmp/"out"), "--base-url", fake.url, "--workers", "1",
                    "--rpm", "0", "--rpd", "0", "--backoff", "0.01", "--no-hf", "--quiet"]
            rc = generate_cli(argv)
            err = capsys.readouterr().err
            assert rc == 75 and "daily quota" in err and "rerun the same command after" in err
            assert fake.counts["generate"] == 4  # 3 served + the 429 per day, which is never retried
            assert len(pd.read_csv(tmp/"out"/"vqa.csv").image_id.unique()) == 3
            fake.rpd = None
            assert generate_cli(argv) == 0
        finally: del os.environ["GEMINI_API_KEY"]
    assert fake.counts["generate"] == 4 + 5 and len(pd.read_csv(tmp/"out"/"vqa.csv").image_id.unique()) == 8

def test_client_side_daily_limit_counts_todays_journal(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        s1 = run_gen(fake, csv, small, tmp/"out", rpd=5)
        s2 = run_gen(fake, csv, small, tmp/"out", rpd=5)
        assert fake.counts["generate"] == 5
    assert s1["images_done"] == 5 and s2["images_done"] == 5 and "client-side limit of 5" in s2["message"]

def test_zero_quota_and_retired_model_stop_the_run(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        fake.script("429-zero")
        s = run_gen(fake, csv, small, tmp/"a", workers=1)
        assert s["status"] == "stopped" and "no quota" in s["message"] and fake.counts["generate"] == 1
        fake.script(("status", 404))
        s = run_gen(fake, csv, small, tmp/"b", workers=1)
    assert s["status"] == "stopped" and "rejected for every image" in s["message"]

def test_per_minute_limiter_spacing(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        t0 = time.monotonic(); run_gen(fake, csv, small, tmp/"out", rpm=600, limit=4)
    assert time.monotonic() - t0 >= 0.3  # 4 requests spaced 0.1 s apart

# --- kill -9 and resume ----------------------------------------------------------------------------------------------
def _cli(csv, small, out, url):
    return ["generate", *_argv(csv, small, out, url, "--workers", "4", "--rpm", "0", "--rpd", "0")]

def test_kill9_at_random_moments_then_resume_gives_identical_dataset(tmp_path):
    csv, small = toy_curated(tmp_path/"cur", n=40)
    env = {**os.environ, "GEMINI_API_KEY": KEY}
    seed = int(os.environ.get("ABOVQA_KILL_SEED", time.time_ns() % 10**6))   # rerun a failure with ABOVQA_KILL_SEED=seed
    rng = random.Random(seed)
    with FakeGemini(latency=0.15, record=False) as fake:
        ref = run_gen(fake, csv, small, tmp_path/"ref", workers=4)
        out, kills = tmp_path/"out", 0
        for _ in range(2):
            base = fake.counts["generate"]; target = base + rng.randint(1, 12)
            p = subprocess.Popen(cli_argv(*_cli(csv, small, out, fake.url)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = time.monotonic()
            while fake.counts["generate"] < target and p.poll() is None and time.monotonic() - t0 < 60: time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.2))
            if p.poll() is None: os.kill(p.pid, signal.SIGKILL); kills += 1
            p.wait()
        assert kills == 2, "a run finished before it could be killed"
        r = run_cli(*_cli(csv, small, out, fake.url), env=env)
    assert r.code == 0, r.err
    assert (out/"vqa.csv").read_bytes() == (tmp_path/"ref"/"vqa.csv").read_bytes(), f"seed {seed}"
    recs = [json.loads(l) for l in (out/"journal.jsonl").read_text().splitlines() if l.strip()]
    final = [x["key"] for x in recs if x["status"] in DONE]
    assert len(final) == len(set(final)) == 40  # no image lost, none answered twice
    assert ref["pairs"]["kept"] == len(pd.read_csv(out/"vqa.csv")) > 0

# --- secrets ---------------------------------------------------------------------------------------------------------
def test_key_never_written(toy):
    csv, small, tmp = toy
    echo = lambda body: (400, error_body(400, "INVALID_ARGUMENT", f"API key {KEY} not valid for this request"))
    with FakeGemini() as fake:
        fake.script(echo)
        os.environ["GEMINI_API_KEY"] = KEY
        try: s = run_gen(fake, csv, small, tmp/"out", hf=True, limit=4)
        finally: del os.environ["GEMINI_API_KEY"]
    assert s["images_done"] == 3 and s["this_run"]["requests"]["error"] == 1
    journal = (tmp/"out"/"journal.jsonl").read_text()
    assert "not valid" in journal and "***" in journal  # the error was recorded, with the key redacted
    files = [p for p in (tmp/"out").rglob("*") if p.is_file()]
    assert len(files) >= 6 and any(p.suffix == ".arrow" for p in files)
    for p in files: assert KEY.encode() not in p.read_bytes(), p

# --- batch -----------------------------------------------------------------------------------------------------------
def test_batch_mode_end_to_end_and_resume_by_job_name(toy):
    csv, small, tmp = toy
    with FakeGemini(batch_polls=3) as fake:
        fake.script("blocked-safety")
        s1 = run_gen(fake, csv, small, tmp/"out", batch=True, poll_s=0.01, batch_timeout_s=0)
        assert s1["status"] == "stopped" and "still running" in s1["message"] and s1["images_done"] == 0
        name = load_jobs(tmp/"out")[0]["name"]
        s2 = run_gen(fake, csv, small, tmp/"out", batch=True, poll_s=0.01)
        assert fake.counts["batch_create"] == 1  # the rerun polled the recorded job, no resubmission
        s3 = run_gen(fake, csv, small, tmp/"other", batch=True, batch_jobs=[name], poll_s=0.01)
        assert fake.counts["batch_create"] == 1
        online = run_gen(fake, csv, small, tmp/"online")
    assert s2["status"] == "complete" and s2["images_done"] == 8 and s2["replies"] == {"ok": 7, "blocked": 1}
    assert s3["images_done"] == 8
    recs = [json.loads(l) for l in (tmp/"out"/"journal.jsonl").read_text().splitlines()]
    assert {r["mode"] for r in recs} == {"batch"} and all(r["job"] == name for r in recs)
    assert s2["tokens"]["input"] == online["tokens"]["input"]
    assert s2["cost_usd"] == pytest.approx(cost_usd(s2["config"]["model"], s2["tokens"]["input"], s2["tokens"]["output"], batch=True), abs=1e-6)  # half price
    assert s2["cost_usd"] < online["cost_usd"] * 0.5
    body = [r for r in fake.requests if r["path"].endswith(":batchGenerateContent")][0]["body"]
    reqs = body["batch"]["inputConfig"]["requests"]["requests"]
    assert len(reqs) == 8 and reqs[0]["request"]["generationConfig"]["seed"] == 42 and "inlineData" in json.dumps(reqs[0])

# --- metadata backend, outputs ---------------------------------------------------------------------------------------
def test_metadata_backend_and_outputs(tmp_path):
    csv, small = toy_curated(tmp_path/"cur", n=10)
    df = pd.read_csv(csv); pd.concat([df, df.head(2)]).to_csv(tmp_path/"dup.csv", index=False)
    rc = generate_cli([str(tmp_path/"dup.csv"), "--images", str(small), "-o", str(tmp_path/"out"), "--backend", "metadata", "--quiet"])
    assert rc == 0
    vqa = pd.read_csv(tmp_path/"out"/"vqa.csv")
    assert list(vqa.columns[:7]) == ["image_path", "question", "answer", "image_id", "item_id", "prompt", "model"]
    assert set(vqa.model) == {"metadata"} and vqa.image_id.nunique() == 10
    assert vqa.answer.str.fullmatch(r"[a-z0-9-]+").all()
    tq = vqa[vqa.question.str.contains(r"type of product|What is this item\?|kind of product")]
    types = dict(zip(tq.image_id, tq.answer))
    want = {"DRINKING_CUP": "mug", "CHAIR": "chair", "LAMP": "lamp", "BOTTLE": "bottle", "OUTDOOR_LIVING": "living"}
    assert all(types[i] == want[t] for i, t in zip(df.image_id, df.product_type))
    s = json.loads((tmp_path/"out"/"summary.json").read_text())
    assert s["duplicate_images"] == 2 and s["meta_check"]["agreement_rate"] == 1.0
    import datasets
    ds = datasets.load_from_disk(str(tmp_path/"out"/"hf"))
    assert len(ds) == len(vqa) and ds[0]["image"].size == (64, 64) and ds[0]["question"] == vqa.question[0]
    card = (tmp_path/"out"/"hf"/"README.md").read_text()
    assert "license: cc-by-4.0" in card and "Amazon Berkeley Objects" in card and f"{len(vqa)} pairs kept" in card

def test_missing_images_are_counted_not_fatal(toy, capsys, monkeypatch):
    csv, small, tmp = toy
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    cur = pd.read_csv(csv); (small/cur.image_path[0]).unlink()
    with FakeGemini() as fake: s = run_gen(fake, csv, small, tmp/"out")
    assert s["missing_images"] == 1 and s["images_done"] == 7 and s["missing_examples"] == [cur.image_path[0]]
    assert list(pd.read_csv(tmp/"out"/"missing_images.csv").image_path) == [cur.image_path[0]]
    assert main(["generate", str(csv), "--images", str(small), "-o", str(tmp/"out"), "--quiet", "--no-hf"]) == 0   # nothing left to ask
    err = capsys.readouterr().err
    assert f"skipped 1 image(s) not under --images (e.g. {cur.image_path[0]})" in err and "missing_images.csv" in err

def test_corrupt_journal_line_names_file_and_line(tmp_path):
    j = tmp_path/"journal.jsonl"
    j.write_text('{"key": "a", "status": "ok"}\nnot json\n{"key": "b", "status": "ok"}\n')
    with pytest.raises(ValueError, match=r"journal.jsonl:2: corrupt"): Journal(j).load()

def test_sdk_base_url_variable_still_works(toy, monkeypatch):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
        s = generate(csv, small, tmp/"out", client=make_client(KEY), rpm=None, rpd=None, hf=False, progress=False, limit=2)
        assert fake.counts["generate"] == 2
    assert s["status"] == "complete"

def test_batch_creation_failure_stops_cleanly(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        fake.batch_reject = "429-minute"   # e.g. the tier's enqueued-token limit
        s = run_gen(fake, csv, small, tmp/"out", batch=True, poll_s=0.01)
        assert s["status"] == "stopped" and "creating a batch job failed" in s["message"] and s["images_done"] == 0
        fake.batch_reject = None
        s = run_gen(fake, csv, small, tmp/"out", batch=True, poll_s=0.01)
    assert s["status"] == "complete" and s["images_done"] == 8

# --- real-service quirks (review) ------------------------------------------------------------------------------------
def test_invalid_key_400_stops_the_run_instead_of_failing_every_image(toy):
    "Gemini answers a bad key with 400 INVALID_ARGUMENT + ErrorInfo API_KEY_INVALID (not 401): one request, then stop."
    csv, small, tmp = toy
    bad = error_body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                     [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}])
    with FakeGemini() as fake:
        fake.script(*[lambda b: (400, bad)] * 8)
        s = run_gen(fake, csv, small, tmp/"out", workers=1)
        n = fake.counts["generate"]
    assert s["status"] == "stopped" and "rejected for every image" in s["message"] and n == 1
    assert KEY not in json.dumps(s)

def test_reply_cut_off_by_max_tokens_drops_the_truncated_last_pair(toy):
    csv, small, tmp = toy
    from abovqa.fakegemini import gen_response
    with FakeGemini() as fake:
        fake.script(lambda b: (200, gen_response("What color is it?,red\nWhat shape is the base?,rou", finish="MAX_TOKENS")))
        s = run_gen(fake, csv, small, tmp/"out", workers=1, limit=1)
    vqa = pd.read_csv(tmp/"out"/"vqa.csv")
    assert s["replies"] == {"ok": 1} and list(vqa.answer) == ["red"]

def test_pro_and_new_flash_models_get_a_thinking_level_they_accept(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        run_gen(fake, csv, small, tmp/"a", limit=1, params=GenParams(model="gemini-3.1-pro"))
        run_gen(fake, csv, small, tmp/"b", limit=1, params=GenParams(model="gemini-3.5-flash-lite"))
        levels = [v for b in fake.bodies() for v in b["generationConfig"]["thinkingConfig"].values()]  # the SDK writes `thinking_level`
    assert levels == ["LOW", "MINIMAL"]

def test_batch_results_without_echoed_metadata_are_matched_by_order(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        fake.batch_metadata = False
        s = run_gen(fake, csv, small, tmp/"out", batch=True, poll_s=0.01)
        online = run_gen(fake, csv, small, tmp/"online")
    assert s["status"] == "complete" and s["images_done"] == 8 and fake.counts["batch_create"] == 1
    key = ["image_id", "question", "answer"]
    b, o = (pd.read_csv(tmp/d/"vqa.csv")[key].sort_values(key).reset_index(drop=True) for d in ("out", "online"))
    pd.testing.assert_frame_equal(b, o)


# --- defaults that finish (#11.6) ------------------------------------------------------------------------------------
def _argv(csv, small, out, url, *extra):
    return [str(csv), "--images", str(small), "-o", str(out), "--base-url", url, "--backoff", "0.01", "--no-hf", "--quiet", *extra]

def test_default_run_has_no_client_cap_sends_no_sampling_and_records_model_version(tmp_path, monkeypatch):
    "No --rpm/--rpd: no free-tier pacing or daily cap (old main: 5 RPM and 20 a day); the default model gets no sampling fields."
    csv, small = toy_curated(tmp_path/"cur", n=24)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with FakeGemini() as fake:
        t0 = time.monotonic()
        rc = main(["generate", *_argv(csv, small, tmp_path/"out", fake.url)])
        dt, n = time.monotonic() - t0, fake.counts["generate"]
        sent = fake.bodies()[0]["generationConfig"]
    s = json.loads((tmp_path/"out"/"summary.json").read_text())
    run = json.loads((tmp_path/"out"/"run.json").read_text())
    assert rc == 0 and s["status"] == "complete" and s["images_done"] == 24 and n == 24 and dt < 30
    assert (s["config"]["rpm"], s["config"]["rpd"], s["config"]["workers"]) == (None, None, 32)
    assert not {"temperature", "topK", "topP", "candidateCount"} & set(sent) and sent["seed"] == 42
    assert run["request"]["sampling"].startswith("fixed by the model") and "temperature" not in run["request"]["generation_config"]
    assert s["model_versions"] == {"fake-gemini-001": 24}
    recs = [json.loads(l) for l in (tmp_path/"out"/"journal.jsonl").read_text().splitlines()]
    assert {r["model_version"] for r in recs} == {"fake-gemini-001"}

def test_models_that_take_sampling_still_get_the_reports_settings(toy):
    csv, small, tmp = toy
    with FakeGemini() as fake:
        s = run_gen(fake, csv, small, tmp/"out", params=GenParams(model="gemini-3.1-flash-lite"), limit=1)
        g = fake.bodies()[0]["generationConfig"]
    run = json.loads((tmp/"out"/"run.json").read_text())
    assert s["status"] == "complete" and (g["temperature"], g["topK"], g["topP"], g["candidateCount"]) == (0.0, 1, 1.0, 1)
    assert run["request"]["sampling"] == "sent" and run["request"]["generation_config"]["temperature"] == 0.0

def test_per_minute_429s_pace_the_run_without_using_up_attempts(tmp_path, monkeypatch):
    "A server quota of 6 requests per 1-s window (time compressed): every image gets done though each may meet several 429s."
    csv, small = toy_curated(tmp_path/"cur", n=30)
    monkeypatch.setattr(abovqa.quota, "QUOTA_WINDOW_S", 1.0)
    with FakeGemini(rpm=6, window=1.0, tier="paid", latency=0.02) as fake:
        s = run_gen(fake, csv, small, tmp_path/"out", workers=8, policy=RetryPolicy(max_attempts=2, base_s=0.01, cap_s=2))
        n429 = fake.counts[429]
    assert s["status"] == "complete" and s["images_done"] == 30 and n429 > 0
    assert s["this_run"]["requests"] == {"ok": 30}

# --- generation under faults (#12.6) ---------------------------------------------------------------------------------
def test_circuit_breaker_stops_after_k_failures_in_a_row_and_keeps_the_work(tmp_path, monkeypatch, capsys):
    csv, small = toy_curated(tmp_path/"cur", n=20)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with FakeGemini() as fake:
        fake.script("ok", "ok", "ok", *["503"] * 200)
        rc = main(["generate", *_argv(csv, small, tmp_path/"out", fake.url, "--workers", "1", "--max-consecutive-failures", "5")])
        n = fake.counts["generate"]
    err = capsys.readouterr().err
    s = json.loads((tmp_path/"out"/"summary.json").read_text())
    assert rc == 1 and n == 3 + 5 and s["status"] == "stopped" and s["images_done"] == 3
    line = [l for l in err.splitlines() if "in a row" in l]
    assert len(line) == 1 and "5 server/network failures in a row" in line[0] and "503 UNAVAILABLE" in line[0] and "Traceback" not in err
    assert len(pd.read_csv(tmp_path/"out"/"vqa.csv").image_id.unique()) == 3

def test_second_run_on_the_same_folder_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, monkeypatch, capsys):
    csv, small = toy_curated(tmp_path/"cur", n=30)
    env = {**os.environ, "GEMINI_API_KEY": KEY}; monkeypatch.setenv("GEMINI_API_KEY", KEY)
    out = tmp_path/"out"
    with FakeGemini(latency=0.2, record=False) as fake:
        first = subprocess.Popen(cli_argv("generate", *_argv(csv, small, out, fake.url, "--workers", "1")), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        while fake.counts["generate"] < 2 and time.monotonic() - t0 < 60: time.sleep(0.01)
        first.send_signal(signal.SIGSTOP); time.sleep(0.5)   # frozen: any request from now on is the second run's
        before = fake.counts["generate"]
        rc = main(["generate", *_argv(csv, small, out, fake.url)])
        err = capsys.readouterr().err
        assert rc == 1 and f"pid {first.pid}" in err and "in use by another generate run" in err and len(err.strip().splitlines()) == 1
        assert fake.counts["generate"] == before   # the refused run sent nothing
        first.kill(); first.wait()
        assert (out/LOCK_NAME).exists()   # killed: its lock is left behind
        assert main(["generate", *_argv(csv, small, out, fake.url)]) == 0
    assert "taking over the stale lock" in capsys.readouterr().err and not (out/LOCK_NAME).exists()
    assert json.loads((out/"summary.json").read_text())["images_done"] == 30

def test_ctrl_c_stops_cleanly_with_the_resume_hint(tmp_path):
    csv, small = toy_curated(tmp_path/"cur", n=40)
    env = {**os.environ, "GEMINI_API_KEY": KEY}
    out = tmp_path/"out"
    with FakeGemini(latency=0.2, record=False) as fake:
        p = subprocess.Popen(cli_argv("generate", *_argv(csv, small, out, fake.url, "--workers", "2")), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             # a shell's background job inherits Ctrl-C *ignored*; the test is about a user's Ctrl-C
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        t0 = time.monotonic()
        while fake.counts["generate"] < 6 and time.monotonic() - t0 < 60: time.sleep(0.01)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        assert "Traceback" not in err and "rerun the same command to continue" in err
        s = json.loads((out/"summary.json").read_text())
        done = [json.loads(l)["key"] for l in (out/"journal.jsonl").read_text().splitlines()]
        assert s["status"] == "interrupted" and 0 < s["images_done"] == len(done) < 40 and not (out/LOCK_NAME).exists()
        r = run_cli("generate", *_argv(csv, small, out, fake.url), env=env)
    assert r.code == 0 and json.loads((out/"summary.json").read_text())["images_done"] == 40

KEYS = ['AIzaLEAK"quote\\back-slash', 'AIzaLEAK-new\nline', 'AIzaLEAK-n\u00f6n-ascii', 'AIzaLEAK"all\\of\nth\u00e9m']

@pytest.mark.parametrize("key", KEYS)
def test_key_never_appears_in_any_form(tmp_path, key, capsys, monkeypatch):
    "Through the SDK with a key the CLI would refuse, a fake that echoes the key back (JSON-escaped) in errors and replies."
    from google import genai
    from google.genai import types
    csv, small = toy_curated(tmp_path/"cur", n=6)
    echo = lambda b: (400, error_body(400, "INVALID_ARGUMENT", f"API key {key} not valid for this request"))
    text = lambda b: (200, __import__("abovqa.fakegemini", fromlist=["x"]).gen_response(f"What is the key?,{key}\nWhat color is it?,red"))
    with FakeGemini() as fake:
        client = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=fake.url, api_version="v1beta", timeout=5000))
        fake.script(echo, text)
        s = generate(csv, small, tmp_path/"out", client=client, workers=1, policy=FAST, hf=True, progress=False, max_failures=0)
    out = capsys.readouterr()
    files = [p for p in (tmp_path/"out").rglob("*") if p.is_file()]
    assert {"journal.jsonl", "summary.json", "run.json", "rejected.csv", "vqa.csv"} <= {p.name for p in files}
    if key.isascii() and key.isprintable():   # the echoes came back: an error record and a kept pair, both redacted
        assert s["this_run"]["requests"]["error"] == 1 and "***" in (tmp_path/"out"/"journal.jsonl").read_text()
    else: assert s["this_run"]["requests"] == {"error": 6}   # the HTTP layer refused the key: its errors quote it
    for p in files: assert b"AIzaLEAK" not in p.read_bytes(), p
    assert "AIzaLEAK" not in out.out + out.err + json.dumps(s)
    monkeypatch.setenv("GEMINI_API_KEY", key)   # the CLI refuses such a key before any request, without showing it
    if not (key.isascii() and key.isprintable()):
        with FakeGemini() as fake:
            rc = main(["generate", *_argv(tmp_path/"cur"/"curated.csv", small, tmp_path/"cli", fake.url)])
            assert fake.counts["generate"] == 0
        err = capsys.readouterr().err
        assert rc == 2 and "copy it again" in err and "AIzaLEAK" not in err

# --- nothing done is not success; options checked first (#12.2) ------------------------------------------------------
def test_wrong_images_folder_exits_1_before_any_request(toy, capsys, monkeypatch):
    csv, small, tmp = toy
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    (tmp/"empty").mkdir()
    with FakeGemini() as fake:
        rc = main(["generate", *_argv(csv, tmp/"empty", tmp/"out", fake.url)])
        assert fake.counts["generate"] == 0
    err = capsys.readouterr().err
    assert rc == 1 and "--images" in err and "none of the 8 pending images" in err and len(err.strip().splitlines()) == 1

@pytest.mark.parametrize("opt", [["--max-attempts", "0"], ["--workers", "0"], ["--rpm", "-1"], ["--rpd", "-5"],
                                 ["--max-consecutive-failures", "-1"], ["--thinking", "lots"], ["--yes-no-cap", "1.5"],
                                 ["--meta-attributes", "color,size"], ["--timeout", "0"], ["--limit", "-1"]])
def test_bad_options_are_refused_before_any_request(toy, capsys, monkeypatch, opt):
    csv, small, tmp = toy
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with FakeGemini() as fake:
        rc = main(["generate", *_argv(csv, small, tmp/"out", fake.url, *opt)])
        assert fake.counts["generate"] == 0
    err = capsys.readouterr().err
    assert rc == 2 and opt[0] in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp/"out").exists()
