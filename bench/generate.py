"""Benchmark abovqa.generate against the fake Gemini server.

1. Throughput under a quota: fake server with fixed latency and a server-side rpm quota, client limiter at the same rpm.
2. Throughput bound by latency: no quota, `workers` concurrent requests of fixed latency.
   Target for both: achieved >= 0.9 * min(rpm/60, workers/latency), and no 429 from the server. "Steady" counts the
   replies after the first wave over the time they took (excludes start-up: plan, thread pool, first connections);
   "end to end" is images / wall time of the whole generate() call. Both are reported; `ok` uses steady.
3. Paid tier with the defaults (#11.6): `generate()` with no --rpm/--rpd/--workers (32 workers, adaptive pacing) against a
   fake with a realistic per-reply latency and a server-side per-minute quota: Tier 1's 1,000 RPM (the notes' figure for
   3.5 Flash), and a tighter 600 RPM so the server's 429s must slow the run down (AIMD). Reports images/s, server 429s,
   limiter cuts and the projected hours for 20k images at that rate.
4. Resume over a 100k-row journal (5 pairs each): reading curated.csv + the journal and skipping every finished image
   must take < 5 s; the whole no-op rerun (that, plus rebuilding vqa.csv from 500k pairs) is reported too.
CPU seconds are reported next to wall seconds because the shared 2-core box this was written on runs at load ~7.

  python bench/generate.py [--quick] [--out bench/generate.json]
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path
import orjson, pandas as pd
from abovqa.fakegemini import FakeGemini, toy_curated, CURATED_COLUMNS
from abovqa.gemini import GenParams, make_client
from abovqa.generate import generate, plan
from abovqa.quota import RateLimiter, RetryPolicy, work_key

def throughput(n, latency, rpm, workers, tmp):
    "Requests per second achieved by generate() against the fake, end to end and in steady state, vs the bound."
    csv, small = toy_curated(Path(tmp)/f"cur{n}", n=n)
    out = Path(tmp)/f"out-{latency}-{rpm}"
    with FakeGemini(latency=0.0, rpm=None, record=False) as fake:   # warm the SDK (first call builds its models)
        warm = make_client("bench-key", fake.url)   # keep a reference: a dropped Client closes its httpx client
        warm.models.generate_content(model="m", contents="hi")
    with FakeGemini(latency=latency, rpm=rpm, record=False) as fake:
        client = make_client("bench-key", fake.url)
        t0 = time.time()
        s = generate(csv, small, out, client=client, workers=workers, rpm=rpm, rpd=None,
                     policy=RetryPolicy(base_s=0.2, cap_s=2), hf=False, progress=False)
        dt = time.time() - t0
        n429 = fake.counts[429]
    ts = sorted(orjson.loads(l)["t"] for l in (out/"journal.jsonl").read_bytes().splitlines())
    first = min(workers, n) if not rpm else 1
    steady = (len(ts) - first) / (ts[-1] - ts[first - 1])   # replies after the first wave, over the time they took
    bound = min(rpm / 60 if rpm else float("inf"), workers / latency)
    got = s["images_done"] / dt
    return dict(n=n, latency_s=latency, rpm=rpm, workers=workers, seconds=round(dt, 2), end_to_end_rps=round(got, 2),
                steady_rps=round(steady, 2), bound_rps=round(bound, 2), ratio_end_to_end=round(got / bound, 3),
                ratio_steady=round(steady / bound, 3), server_429=n429, ok=steady >= 0.9 * bound and n429 == 0)

def paid_defaults(n, latency, rpm, tmp):
    "Images/s of a default generate() run against a paid-tier fake (server rpm quota, fixed latency); projected 20k hours."
    import abovqa.generate as g
    csv, small = toy_curated(Path(tmp)/f"paid{n}-{rpm}", n=n)
    out = Path(tmp)/f"paid-out-{rpm}"
    cuts = []
    class Lim(RateLimiter):   # the engine's own limiter, kept so its cuts and final pace can be reported
        def __init__(self, *a, **k): super().__init__(*a, **k); cuts.append(self)
    orig, g.RateLimiter = g.RateLimiter, Lim   # the name generate's run looks up
    try:
        with FakeGemini(latency=latency, rpm=rpm, tier="paid", record=False) as fake:
            t0 = time.time()
            s = generate(csv, small, out, client=make_client("bench-key", fake.url), hf=False, progress=False)
            dt, n429 = time.time() - t0, fake.counts[429]
    finally: g.RateLimiter = orig
    rps = s["images_done"] / dt; lim = cuts[0]
    return dict(n=n, latency_s=latency, server_rpm=rpm, workers=s["config"]["workers"], seconds=round(dt, 1),
                images_per_s=round(rps, 2), images_per_min=round(rps * 60), share_of_quota=round(rps * 60 / rpm, 3),
                bound_rpm=round(min(rpm, s["config"]["workers"] / latency * 60)), server_429=n429, limiter_cuts=lim.cuts,
                final_pace_rpm=None if lim.rate is None else round(lim.rate), status=s["status"],
                hours_for_20k=round(20_000 / rps / 3600, 2), ok=s["status"] == "complete")

def resume_100k(tmp, n=100_000):
    "Seconds for a rerun over a finished n-row journal (plan, and plan + rebuilding every output)."
    root = Path(tmp)/"big"; root.mkdir()
    colors, shapes = ["red", "blue", "green", "black"], ["round", "square"]
    df = pd.DataFrame(dict(image_id=[f"{i:08x}" for i in range(n)], item_id=[f"B{i:09d}" for i in range(n)]))
    df["image_path"] = [f"{i[:2]}/{i}.jpg" for i in df.image_id]
    df["color"] = [colors[i % 4] for i in range(n)]; df["item_shape"] = [shapes[i % 2] for i in range(n)]
    df["metadata"] = "color: " + df.color + "\nitem_shape: " + df.item_shape
    df.reindex(columns=CURATED_COLUMNS).to_csv(root/"curated.csv", index=False)
    kp = GenParams().key_params(); out = root/"out"; out.mkdir()
    with open(out/"journal.jsonl", "wb") as f:
        for r in df.itertuples():
            pairs = [["What color is the product?", r.color], ["What shape is it?", r.item_shape], ["Is it new?", "yes"],
                     ["How many items are shown?", "1"], ["What is the product?", "mug"]]
            f.write(orjson.dumps(dict(key=work_key(r.image_path, kp), image_id=r.image_id, image_path=r.image_path,
                    model=kp["model"], prompt=kp["prompt"], mode="online", status="ok", text="...", pairs=pairs,
                    usage=dict(input=300, output=40, thoughts=0), attempts=1, t=time.time())) + b"\n")
    t0, c0 = time.perf_counter(), time.process_time()
    p = plan(root/"curated.csv", root/"images", out, GenParams())
    t_plan, c_plan = time.perf_counter() - t0, time.process_time() - c0
    assert not p["todo"] and len(p["done"]) == n
    t0, c0 = time.perf_counter(), time.process_time()
    s = generate(root/"curated.csv", root/"images", out, params=GenParams(), hf=False, progress=False)
    t_all, c_all = time.perf_counter() - t0, time.process_time() - c0
    assert s["images_done"] == n and s["this_run"]["requests"] == {}
    # resuming = reading curated + journal and skipping every finished image (what runs before any new request)
    return dict(rows=n, pairs=s["pairs"]["kept"], resume_wall_s=round(t_plan, 2), resume_cpu_s=round(c_plan, 2),
                noop_rerun_wall_s=round(t_all, 2), noop_rerun_cpu_s=round(c_all, 2), ok=t_plan < 5)

def main(argv=None):
    ap = argparse.ArgumentParser(); ap.add_argument("--quick", action="store_true"); ap.add_argument("--out")
    ap.add_argument("--only", help="comma-separated subset of quota,latency,paid,paid_tight,resume")
    a = ap.parse_args(argv)
    k = 0.5 if a.quick else 1
    runs = dict(quota=lambda tmp: throughput(int(120 * k), 0.05, 600, 8, tmp),
                latency=lambda tmp: throughput(int(96 * k), 1.0, None, 8, tmp),
                paid=lambda tmp: paid_defaults(int(1200 * k), 2.0, 1000, tmp),
                paid_tight=lambda tmp: paid_defaults(int(1500 * k), 2.0, 600, tmp),
                resume=lambda tmp: resume_100k(tmp, 100_000))
    only = a.only.split(",") if a.only else list(runs)
    with tempfile.TemporaryDirectory() as tmp:
        res = {name: runs[name](tmp) for name in only}
    res["cpus"], res["load_avg"] = os.cpu_count(), [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(res, indent=1))
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1))
    return 0 if all(r["ok"] for r in res.values() if isinstance(r, dict)) else 1

if __name__ == "__main__": sys.exit(main())
