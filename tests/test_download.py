"`abovqa download-abo` end to end against a local S3-like server: cuts, kill -9, no-op reruns, disk full, tar slip, --images-for."
import filecmp, io, json, os, signal, subprocess, tarfile, time
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest

from abovqa.cli import main
from abovqa.download import ARCHIVES, STATE_DIR, ArchiveServer, download_abo, make_archives
from abovqa.fixtures import cli_argv, run_cli
from abovqa.sample import make_sample_abo

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def abo(tmp_path_factory):
    "(sample ABO root, folder serving its two archives)"
    tmp = tmp_path_factory.mktemp("abo")
    root = make_sample_abo(tmp/"sample", listings=600)
    return root, make_archives(root, tmp/"served")


def same_tree(a, b):
    "Every file under a exists in b with the same bytes."
    for p in Path(a).rglob("*"):
        if p.is_file(): assert filecmp.cmp(p, Path(b)/p.relative_to(a), shallow=False), p


def size(served, name): return (served/ARCHIVES[name]).stat().st_size


def test_resume_after_cuts(abo, tmp_path, capsys):
    root, served = abo
    total = size(served, "listings") + size(served, "images-small")
    with ArchiveServer(served, cut_after=100_000, cuts=4) as srv:
        assert main(["download-abo", str(tmp_path/"abo"), "--base-url", srv.url, "--quiet"]) == 0
        sent, gets = srv.sent, len(srv.gets())
    same_tree(root/"listings", tmp_path/"abo/listings"); same_tree(root/"images", tmp_path/"abo/images")
    out = capsys.readouterr().out
    assert "retries" in out and out.count("MD5") == 2, out             # the same process: MD5 verified despite the cuts
    assert 2 < gets <= 2 + 4 and total <= sent <= total + 4*100_000, (gets, sent, total)   # a cut may fall past a short archive's end
    print(f"\ncuts: archives {total:,} B, server sent {sent:,} B ({sent/total - 1:+.2%}) in {gets} GETs")


def test_resume_after_kill9(abo, tmp_path):
    root, served = abo
    dest, n = tmp_path/"abo", size(served, "images-small")
    state = dest/STATE_DIR/"images-small.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with ArchiveServer(served, rate=1e6, crc32=True) as srv:
        p = subprocess.Popen(cli_argv("download-abo", dest, "--what", "images-small", "--base-url", srv.url, "--quiet"), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (state.exists() and json.loads(state.read_text())["offset"] > n//4) and time.monotonic() < deadline: time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL); p.wait()
        before = -1
        while before != srv.sent: before = srv.sent; time.sleep(0.3)   # the server may still be pushing its last chunk
        offset = json.loads(state.read_text())["offset"]
        assert 0 < offset < n and before < n
        assert not [f for f in dest.rglob("*") if f.is_file() and f.name.startswith(".tmp") is False and f.suffix == ".jpg"
                    and f.stat().st_size == 0]
        srv.rate = None; t0 = time.monotonic()
        r = run_cli("download-abo", dest, "--what", "images-small", "--base-url", srv.url, "--quiet", env=env)
        resume_s = time.monotonic() - t0
        assert r.code == 0, r.err
        ranges = [g[2] for g in srv.gets()]
    assert ranges == [None, f"bytes={offset}-"]                             # continued at the saved member boundary
    assert "CRC32" in r.out and f"resumed at" in r.out, r.out       # CRC32 carries over a process restart
    same_tree(root/"images", dest/"images")
    assert srv.sent - n == before - offset                                   # re-fetched only what was past the resume point
    print(f"\nkill -9: archive {n:,} B, sent before kill {before:,} B, resumed at {offset:,}, total sent {srv.sent:,} B "
          f"({srv.sent/n - 1:+.2%}); second run {resume_s:.2f} s")


def test_noop_rerun(abo, tmp_path, capsys):
    _, served = abo
    with ArchiveServer(served) as srv:
        assert main(["download-abo", str(tmp_path/"abo"), "--base-url", srv.url, "--quiet"]) == 0
        before = len(srv.requests)
        assert main(["download-abo", str(tmp_path/"abo"), "--base-url", srv.url, "--quiet"]) == 0
        assert len(srv.requests) == before                                   # not even a HEAD
    assert capsys.readouterr().out.count("nothing transferred") == 2


def test_attached_root_is_left_alone(abo, capsys):
    root, _ = abo   # files present without state files (an attached Kaggle dataset, a manual tar -xf)
    assert main(["download-abo", str(root), "--base-url", "http://127.0.0.1:9", "--retries", "0"]) == 0
    assert not (root/STATE_DIR).exists() and "nothing transferred" in capsys.readouterr().out


def test_disk_full_refused(abo, tmp_path, capsys):
    import shutil
    _, served = abo
    full = shutil._ntuple_diskusage(10**12, 10**12 - 5*10**6, 5*10**6)
    with ArchiveServer(served) as srv, mock.patch("shutil.disk_usage", return_value=full):
        assert main(["download-abo", str(tmp_path/"abo"), "--base-url", srv.url]) == 1
        assert srv.gets() == []
    err = capsys.readouterr().err
    assert "needs 0.0" in err and "only 0.01 GB available" in err and "--images-for" in err, err


def _evil(tmp, members):
    (tmp/"archives").mkdir(parents=True)
    with tarfile.open(tmp/ARCHIVES["listings"], "w") as tf:
        for name, kind in members:
            ti = tarfile.TarInfo(name)
            if kind == "file": ti.size = 3; tf.addfile(ti, io.BytesIO(b"abc"))
            else: ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"; tf.addfile(ti)
    return tmp


@pytest.mark.parametrize("bad", [("../escaped.txt", "file"), ("/tmp/abovqa-absolute.txt", "file"),
                                 ("listings/../../escaped.txt", "file"), ("listings/link", "symlink")])
def test_tar_slip_refused(tmp_path, capsys, bad):
    served = _evil(tmp_path/"served", [("listings/metadata/listings_0.json.gz", "file"), bad])
    with ArchiveServer(served) as srv:
        assert main(["download-abo", str(tmp_path/"root/abo"), "--what", "listings", "--base-url", srv.url, "--quiet"]) == 1
    assert "refusing this archive" in capsys.readouterr().err
    assert not (tmp_path/"root/escaped.txt").exists() and not Path("/tmp/abovqa-absolute.txt").exists()
    assert not (tmp_path/"root/abo/listings/link").exists()


def test_images_for(abo, tmp_path, capsys):
    root, served = abo
    imgs = pd.read_csv(root/"images/metadata/images.csv.gz").rename(columns={"path": "image_path"})
    imgs.sample(20, random_state=0).to_csv(tmp_path/"curated.csv", index=False)
    dest = tmp_path/"abo"
    with ArchiveServer(served) as srv:
        argv = ["download-abo", str(dest), "--what", "images-small", "--images-for", str(tmp_path/"curated.csv"), "--base-url", srv.url, "--quiet"]
        assert main(argv) == 0 and len(srv.gets()) == 1                     # one pass over the stream
        assert main(argv) == 0 and len(srv.gets()) == 1                     # rerun: nothing
    got = sorted(p.relative_to(dest/"images/small").as_posix() for p in (dest/"images/small").rglob("*") if p.is_file())
    assert got == sorted(imgs.sample(20, random_state=0).image_path)
    assert filecmp.cmp(dest/"images/metadata/images.csv.gz", root/"images/metadata/images.csv.gz", shallow=False)
    assert "not named by --images-for" in capsys.readouterr().out


def test_archive_changed_starts_over(abo, tmp_path):
    root, served = abo
    dest = tmp_path/"abo"
    with ArchiveServer(served, cut_after=[30_000, 0], cuts=2) as srv:       # first run stops at the cut
        assert main(["download-abo", str(dest), "--what", "listings", "--base-url", srv.url, "--retries", "0", "--quiet"]) == 1
    assert json.loads((dest/STATE_DIR/"listings.json").read_text())["offset"] > 0
    other = make_archives(make_sample_abo(tmp_path/"other", listings=300, seed=7, images=False), tmp_path/"served2")
    with ArchiveServer(other) as srv:                                   # a new ETag: the stale resume point is not used
        assert main(["download-abo", str(dest), "--what", "listings", "--base-url", srv.url, "--quiet"]) == 0
        assert [g[2] for g in srv.gets()] == [None]
    same_tree(tmp_path/"other/listings", dest/"listings")


def test_if_range_mismatch_restarts(abo, tmp_path):
    "The archive changed between the HEAD and the ranged GET: If-Range fails, the server sends the whole file (200)."
    root, served = abo
    dest = tmp_path/"abo"
    with ArchiveServer(served, cut_after=[30_000, 0], cuts=2) as srv:
        assert main(["download-abo", str(dest), "--what", "listings", "--base-url", srv.url, "--retries", "0", "--quiet"]) == 1
    sp = dest/STATE_DIR/"listings.json"
    st = {**json.loads(sp.read_text()), "etag": "stale"}; sp.write_text(json.dumps(st))
    stale = {**{k: st[k] for k in ("size", "last_modified", "md5", "crc32")}, "etag": "stale"}
    with ArchiveServer(served) as srv, mock.patch("abovqa.download.remote_info", return_value=stale):
        r = download_abo(dest, "listings", srv.url, progress=False)["listings"]
        assert [g[2] for g in srv.gets()] == [f"bytes={st['offset']}-"]   # one request: the 200 answer is used from byte 0
    assert "MD5" in r["checked"]
    same_tree(root/"listings", dest/"listings")


def test_corrupted_transfer_detected(abo, tmp_path, capsys):
    _, served = abo
    with ArchiveServer(served, flip=5000) as srv:
        assert main(["download-abo", str(tmp_path/"abo"), "--what", "listings", "--base-url", srv.url, "--quiet"]) == 1
    assert "MD5 mismatch" in capsys.readouterr().err
    assert not (tmp_path/"abo"/STATE_DIR/"listings.json").exists()          # a rerun starts over


def test_gives_up_with_resume_hint(abo, tmp_path, capsys):
    _, served = abo
    with ArchiveServer(served, cut_after=0, cuts=100) as srv:
        t0 = time.monotonic()
        with mock.patch("time.sleep"):
            assert main(["download-abo", str(tmp_path/"abo"), "--what", "listings", "--base-url", srv.url, "--retries", "2", "--quiet"]) == 1
        assert len(srv.gets()) == 3
    assert "rerun the same command to resume" in capsys.readouterr().err


@pytest.mark.parametrize("argv,msg", [(["--what", "images-large"], "choose from"),
                                      (["--images-for", "nope.csv"], "no such file"),
                                      (["--retries", "-1"], "--retries")])
def test_bad_options_before_any_request(tmp_path, capsys, argv, msg):
    with ArchiveServer(tmp_path) as srv:
        assert main(["download-abo", str(tmp_path/"abo"), "--base-url", srv.url, *argv]) == 2
        assert srv.requests == []
    assert msg in capsys.readouterr().err


def test_wrong_base_url(tmp_path, capsys):
    with ArchiveServer(tmp_path) as srv:
        assert main(["download-abo", str(tmp_path/"abo"), "--base-url", srv.url]) == 1
    assert "HTTP 404" in capsys.readouterr().err
