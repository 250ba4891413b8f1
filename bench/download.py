"""Measure `abovqa download-abo` resume: bytes transferred against the archive size across cut connections and
after kill -9, and the time a rerun takes to resume.

Builds (once, cached under bench/.cache/) a synthetic ABO root with `make_sample_abo(listings=N)` and its two archives
(`make_archives`), then serves them from a local `ArchiveServer` on 127.0.0.1:
  (a) cuts: the server drops the connection after X bytes, K times; one in-process `download_abo` run retries and resumes;
  (b) kill -9: the command runs in a subprocess against a throttled server, is SIGKILLed after T seconds and rerun.
"Sent" is what the server wrote to its sockets, so it includes every re-fetched byte.

    python bench/download.py                       # 3000 listings (a ~59 MB images archive)
    python bench/download.py --listings 1000 --kills 0.8 1.6
"""
import argparse, json, shutil, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from abovqa.download import ARCHIVES, ArchiveServer, download_abo, make_archives, resume_figures

CACHE = Path(__file__).parent/".cache"


def served(listings: int) -> Path:
    "The cached folder holding archives/abo-*.tar for a sample of `listings` (built on first use)."
    out = CACHE/f"archives-{listings}"
    if not (out/".complete").exists():
        from abovqa.sample import make_sample_abo
        with tempfile.TemporaryDirectory() as d:
            make_archives(make_sample_abo(Path(d)/"abo", listings=listings), out)
        (out/".complete").write_text("ok")
    return out


def cuts(srv_dir: Path, cut_after: int, n: int) -> dict:
    "(a) one in-process run through a server that cuts the first `n` responses after `cut_after` bytes."
    size = sum((srv_dir/a).stat().st_size for a in ARCHIVES.values())
    with tempfile.TemporaryDirectory() as d, ArchiveServer(srv_dir, cut_after=cut_after, cuts=n) as srv:
        t = time.perf_counter()
        res = download_abo(Path(d)/"abo", base_url=srv.url, backoff=0.05, progress=False)
        wall = time.perf_counter() - t
        return dict(archive_bytes=size, sent=srv.sent, overhead=srv.sent/size - 1, gets=len(srv.gets()),
                    retries=sum(r["retries"] for r in res.values()), seconds=round(wall, 2),
                    checked={k: r["checked"] for k, r in res.items()})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listings", type=int, default=3000)
    p.add_argument("--cut-after", type=int, default=2_000_000, help="bytes per cut response (default 2 MB)")
    p.add_argument("--cuts", type=int, default=10)
    p.add_argument("--kills", type=float, nargs="+", default=[1.5, 3.0, 6.0], help="seconds before SIGKILL")
    p.add_argument("--rate", type=float, default=4e6, help="throttle (bytes/s) before the kill")
    a = p.parse_args(argv)
    srv_dir = served(a.listings)
    print(f"archives: " + ", ".join(f"{n} {(srv_dir/k).stat().st_size:,} B" for n, k in ARCHIVES.items()))
    c = cuts(srv_dir, a.cut_after, a.cuts)
    print(f"(a) {c['retries']} cuts: sent {c['sent']:,} B for {c['archive_bytes']:,} B of archives ({c['overhead']:+.2%}), "
          f"{c['gets']} GETs, {c['seconds']} s; checked {c['checked']}")
    kills = []
    for k in a.kills:
        with tempfile.TemporaryDirectory() as d:
            f = resume_figures(srv_dir, Path(d)/"abo", kill_after=k, rate=a.rate)
        kills.append(f)
        print(f"(b) kill -9 after {k} s: {f['sent_before_kill']:,} B sent, resume point {f['resume_offset']:,} B; "
              f"total sent {f['sent_total']:,} B for {f['archive_bytes']:,} B ({f['overhead']:+.2%}); rerun's ranged request "
              f"after {f['resume_request_s']} s, rerun done in {f['second_run_s']} s (rc {f['rc']})")
    CACHE.mkdir(exist_ok=True)
    (CACHE/"download-bench.json").write_text(json.dumps(dict(cuts=c, kills=kills), indent=1))


if __name__ == "__main__":
    main()
