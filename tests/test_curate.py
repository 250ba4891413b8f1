"Curation (abovqa.curate) on hand-built edge-case listings, bad input, and the CLI on the synthetic catalogue."
import gzip, json, random

import numpy as np, pandas as pd, pytest

from abovqa.curate import (ATTRIBUTES, COLUMNS, DROP_REASONS, CurationError, curate, curate_cli, listing_lines,
                           small_size)
from abovqa.fixtures import ent, images_for, listing, run_cli, write_root

# ---------------------------------------------------------------- fixtures: hand-built ABO roots (abovqa.fixtures)

def run(root, **kw):
    kw = {"progress": False, "workers": 1, "n": None, **kw}
    df, rep = curate(root, **kw)
    assert sum(rep["drops"].values()) + rep["not_sampled"] + rep["final"] == rep["listings_read"]
    assert set(rep["drops"]) == set(DROP_REASONS) and rep["final"] == len(df)
    return df, rep

def nonzero(rep): return {k: v for k, v in rep["drops"].items() if v}

# ---------------------------------------------------------------- the English rule

def test_first_entry_not_english_still_counts(tmp_path):
    mixed = {a: [ent(f"{a} zh", "zh_CN"), ent(f"{a} es", "es_MX"), ent(f"{a} en", "en_GB")]
             for a in ("item_name", "color", "material", "style")}
    root = write_root(tmp_path/"abo", [[listing("A", "img0000001", english=(), **mixed)]], images_for("img0000001"))
    df, rep = run(root)
    assert rep["final"] == 1
    assert df.color[0] == "color en" and df.item_name[0] == "item_name en"
    assert "zh" not in df.metadata[0] and " es" not in df.metadata[0]

@pytest.mark.parametrize("tag,ok", [("en_US", True), ("en_IN", True), ("en_AE", True), ("es_MX", False),
                                    ("en", False), ("de_DE", False), (None, False)])
def test_language_tag_rule(tmp_path, tag, ok):
    attrs = {a: [{"value": f"{a} x"} if tag is None else ent(f"{a} x", tag)] for a in ("item_name", "color", "material", "style")}
    root = write_root(tmp_path/"abo", [[listing("A", "img0000001", english=(), **attrs)]], images_for("img0000001"))
    _, rep = run(root)
    assert (rep["final"], rep["drops"]["too_little_english"]) == ((1, 0) if ok else (0, 1))

def test_product_type_counts_and_threshold_is_inclusive(tmp_path):
    # product_type (no language tag) + 4 English attributes = 5 -> qualifies; + 3 = 4 -> too little
    root = write_root(tmp_path/"abo", [[listing("FIVE", "img0000001", english=("item_name", "color", "material", "style")),
                                        listing("FOUR", "img0000002", english=("item_name", "color", "material"))]],
                      images_for("img0000001", "img0000002"))
    df, rep = run(root)
    assert df.item_id.tolist() == ["FIVE"] and df.product_type.tolist() == ["CHAIR"]
    assert nonzero(rep) == {"too_little_english": 1}
    df4, rep4 = run(root, min_english=4)
    assert sorted(df4.item_id) == ["FIVE", "FOUR"] and nonzero(rep4) == {}
    none, rep6 = run(root, min_english=6)
    assert rep6["final"] == 0 and rep6["drops"]["too_little_english"] == 2 and list(none.columns) == COLUMNS
    with pytest.raises(CurationError, match="0 images curated from 2 listings .*too_little_english 2"):
        run(root, min_english=6, out_dir=tmp_path/"out")   # nothing curated is a failed run, and writes nothing
    assert not (tmp_path/"out/curated.csv").exists()
    with pytest.raises(ValueError, match="min_english"): run(root, min_english=13)
    with pytest.raises(ValueError, match=r"n \(--n\) must be"): run(root, n=-1)

def test_junk_only_attribute_does_not_count(tmp_path):
    # 4 English attributes + product_type, but bullet_point holds only junk: 4 < 5
    l = listing("A", "img0000001", english=("item_name", "color", "material"), bullet_point=[ent("None"), ent("No Warranty")])
    root = write_root(tmp_path/"abo", [[l]], images_for("img0000001"))
    assert nonzero(run(root)[1]) == {"too_little_english": 1}

# ---------------------------------------------------------------- metadata text

def test_metadata_text_html_junk_and_dedupe(tmp_path):
    l = listing("A", "img0000001", english=("item_name",),
                bullet_point=[ent("None"), ent("Sturdy oak frame"), ent("No Warranty"), ent("sturdy  OAK frame", "en_GB"),
                              ent("Eiche", "de_DE"), ent("Easy\nassembly")],
                color=[{"language_tag": "en_US", "value": "Natural", "standardized_values": ["brown"]},
                       ent("natural"), ent("Beige")],
                product_description=[ent("<p>A <b>solid</b> chair&nbsp;for &lt;2&gt; rooms.</p><br/>", "en_GB"),
                                     ent("<p>Ein Stuhl</p>", "de_DE")],
                material=[ent("Wood")], item_keywords=[ent("chair"), ent("Chair"), ent("seat")])
    root = write_root(tmp_path/"abo", [[l]], images_for("img0000001"))
    df, _ = run(root)
    r = df.iloc[0]
    assert r.metadata.split("\n") == [
        "bullet_point: Sturdy oak frame, Easy assembly", "color: Natural, Beige", "product_type: CHAIR",
        "item_keywords: chair, seat", "item_name: item_name A", "material: Wood",
        "product_description: A solid chair for <2> rooms."]
    assert r.bullet_point == "Sturdy oak frame, Easy assembly" and r.product_description == "A solid chair for <2> rooms."
    assert r.style == "" and r.pattern == ""

# ---------------------------------------------------------------- join and dedupe

def test_no_main_image_and_image_not_in_csv(tmp_path):
    root = write_root(tmp_path/"abo", [[listing("A"), listing("B", ""), listing("C", "notInCsv01"), listing("D", "img0000001")]],
                      images_for("img0000001"))
    df, rep = run(root)
    assert df.item_id.tolist() == ["D"]
    assert nonzero(rep) == {"no_main_image": 2, "image_not_in_csv": 1}

def test_image_not_in_csv_is_tested_before_english(tmp_path):
    root = write_root(tmp_path/"abo", [[listing("A", "notInCsv01", english=()), listing("B", "img0000001", english=())]],
                      images_for("img0000001"))
    assert nonzero(run(root)[1]) == {"image_not_in_csv": 1, "too_little_english": 1}

def test_shared_main_image_gives_one_row_and_seed_picks_the_listing(tmp_path):
    files = [[listing(f"X{i}", "shared0001", domain=d) for i, d in enumerate(["amazon.com", "amazon.co.uk", "amazon.in"])],
             [listing("Y", "shared0001", english=("item_name",)), listing("Z", "img0000002")]]
    root = write_root(tmp_path/"abo", files, images_for("shared0001", "img0000002"))
    winners = set()
    for seed in range(12):
        df, rep = run(root, seed=seed)
        assert sorted(df.image_id) == ["img0000002", "shared0001"]
        assert nonzero(rep) == {"duplicate_image": 2, "too_little_english": 1}
        winners.add(df.set_index("image_id").item_id["shared0001"])
        assert run(root, seed=seed)[0].equals(df)
    assert winners == {"X0", "X1", "X2"}   # any of the qualifying listings can win; Y never qualifies

def test_sizes_path_and_sampling_prefix(tmp_path):
    ids = [f"img{i:07d}" for i in range(30)]
    files = [[listing(f"I{k}{i}", ids[(k*10 + i) % 30]) for i in range(10)] for k in range(4)]   # 40 listings, 30 images
    root = write_root(tmp_path/"abo", files, [(i, 30, 500) for i in ids])
    full, rep = run(root)
    assert rep["final"] == 30 and rep["drops"]["duplicate_image"] == 10
    assert (full.width == 256).all() and (full.height == 15).all()
    assert full.image_path[0] == f"{full.image_id[0][:2]}/{full.image_id[0]}.jpg"
    part, rep7 = run(root, n=7)
    assert part.equals(full.head(7)) and rep7["not_sampled"] == 23
    assert list(part.columns) == COLUMNS
    other, _ = run(root, seed=7)
    assert sorted(other.image_id) == sorted(full.image_id) and other.image_id.tolist() != full.image_id.tolist()

def test_small_size_matches_sample_module():
    from abovqa import sample
    r = random.Random(0)
    hw = [(r.randint(1, 2600), r.randint(1, 2600)) for _ in range(3000)] + [(106, 106), (30, 500), (1, 512), (256, 257)]
    h, w = small_size([a for a, _ in hw], [b for _, b in hw])
    assert [(int(a), int(b)) for a, b in zip(h, w)] == [sample.small_size(a, b) for a, b in hw]

# ---------------------------------------------------------------- determinism and outputs

def test_same_output_for_same_seed_with_1_and_2_workers(tmp_path):
    r = random.Random(1)
    ids = [f"img{i:07d}" for i in range(120)]
    files = [[listing(f"F{k}L{i}", r.choice(ids + [None]), english=tuple(r.sample(ATTRIBUTES[3:], r.randint(2, 6))),
                      tag=r.choice(["en_US", "en_GB", "de_DE"])) for i in range(40)] for k in range(16)]
    root = write_root(tmp_path/"abo", files, images_for(*ids[:100]))
    outs = {}
    for w in (1, 2):
        df, rep = run(root, n=50, workers=w, out_dir=tmp_path/f"out{w}")
        outs[w] = rep
    assert (tmp_path/"out1/curated.csv").read_bytes() == (tmp_path/"out2/curated.csv").read_bytes()
    assert outs[1] == outs[2] and outs[1]["final"] == 50
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path/"out1/curated.parquet"), pd.read_parquet(tmp_path/"out2/curated.parquet"))
    written = json.loads((tmp_path/"out2/curation_report.json").read_text())
    assert written["drops"] == outs[2]["drops"] and written["listings_read"] == 640
    csv = pd.read_csv(tmp_path/"out1/curated.csv", keep_default_na=False)
    assert list(csv.columns) == COLUMNS and len(csv) == 50 and csv.image_id.is_unique

# ---------------------------------------------------------------- bad input

def test_malformed_line_names_file_and_line_and_skip_counts_it(tmp_path):
    bad = ['{"item_id": "B", "main_image_id": "img0000001",', '["a", "list"]', json.dumps(listing("C", "img0000001", color="red"))]
    root = write_root(tmp_path/"abo", [[listing("A", "img0000001")], [listing("D", "img0000002"), bad[0], "", bad[1], bad[2]]],
                      images_for("img0000001", "img0000002"))
    with pytest.raises(CurationError, match=r"listings_1\.json\.gz:2: malformed listing"):
        curate(root, progress=False, workers=1)
    with pytest.raises(CurationError, match=r"listings_1\.json\.gz:2"):
        curate(root, progress=False, workers=2)
    df, rep = run(root, on_error="skip")
    assert nonzero(rep) == {"malformed_line": 3} and rep["final"] == 2 and rep["listings_read"] == 5
    assert [m.split(": malformed")[0] for m in rep["malformed_examples"]] == [
        "listings_1.json.gz:2", "listings_1.json.gz:4", "listings_1.json.gz:5"]

def test_truncated_gzip(tmp_path):
    ids = [f"img{i:07d}" for i in range(400)]
    root = write_root(tmp_path/"abo", [[listing("A", "first00001")], [listing(f"B{i}", ids[i], bullet_point=[ent(f"{i} " * 40)])
                                                                   for i in range(400)]], images_for("first00001", *ids))
    f = root/"listings/metadata/listings_1.json.gz"
    f.write_bytes(f.read_bytes()[:len(f.read_bytes())//2])
    with pytest.raises(CurationError, match=r"listings_1\.json\.gz: unreadable after line \d+: EOFError"):
        curate(root, progress=False, workers=1)
    df, rep = run(root, on_error="skip")
    assert list(rep["unreadable_files"]) == ["listings_1.json.gz"]
    assert 1 < rep["listings_read"] < 401 and rep["final"] == rep["listings_read"]

def test_not_gzip_at_all(tmp_path):
    root = write_root(tmp_path/"abo", [[listing("A", "img0000001")]], images_for("img0000001"))
    (root/"listings/metadata/listings_1.json.gz").write_bytes(b"plain text, not gzip\n")
    with pytest.raises(CurationError, match=r"listings_1\.json\.gz: unreadable after line 0"):
        curate(root, progress=False, workers=1)

def test_wrong_root_names_what_is_missing(tmp_path):
    with pytest.raises(CurationError, match="no such folder") as e:
        curate(tmp_path/"nowhere", progress=False)
    assert "missing: listings/metadata/listings_*.json.gz" in str(e.value)
    write_root(tmp_path/"dl/abo-listings", [[listing("A", "img0000001")]])
    with pytest.raises(CurationError) as e: curate(tmp_path/"dl", progress=False)
    msg = str(e.value)
    assert "is not an ABO root" in msg and "missing: images/metadata/images.csv.gz" in msg
    assert "abo-listings" in msg   # points at the folder one level down

def test_images_csv_without_expected_columns(tmp_path):
    root = write_root(tmp_path/"abo", [[listing("A", "img0000001")]], images_for("img0000001"))
    pd.DataFrame({"image_id": ["img0000001"], "path": ["x.jpg"]}).to_csv(root/"images/metadata/images.csv.gz", index=False)
    with pytest.raises(CurationError, match=r"images\.csv\.gz: missing column\(s\) height, width"):
        curate(root, progress=False, workers=1)

def test_gunzipped_copies_are_accepted(tmp_path):
    root = write_root(tmp_path/"abo", [[listing("A", "img0000001")]], images_for("img0000001"))
    for f in [root/"listings/metadata/listings_0.json.gz", root/"images/metadata/images.csv.gz"]:
        f.with_suffix("").write_bytes(gzip.decompress(f.read_bytes())); f.unlink()
    assert run(root)[1]["final"] == 1

def test_verify_images_drops_and_counts_missing_and_corrupt(tmp_path):
    ids = [f"img{i:07d}" for i in range(6)]
    root = write_root(tmp_path/"abo", [[listing(f"L{i}", i_) for i, i_ in enumerate(ids)]], [(i, 60, 80) for i in ids],
                      jpegs=ids[:4])
    (root/"images/small"/ids[1][:2]/f"{ids[1]}.jpg").write_bytes(b"\xff\xd8\xff broken")
    good = root/"images/small"/ids[2][:2]/f"{ids[2]}.jpg"
    good.write_bytes(good.read_bytes()[:120])   # truncated JPEG: opens, fails to decode
    df, rep = run(root, verify_images=True)
    assert sorted(df.image_id) == [ids[0], ids[3]]
    assert nonzero(rep) == {"missing_image_file": 2, "undecodable_image_file": 2}
    assert (df.width == 80).all() and (df.height == 60).all()
    one, rep1 = run(root, verify_images=True, n=1)
    assert rep1["final"] == 1 and one.image_id[0] in (ids[0], ids[3])
    assert not nonzero(run(root)[1])   # without the flag nothing is opened

def test_listing_lines_streams_across_chunk_boundaries(tmp_path):
    lines = [json.dumps({"i": i, "pad": "x" * random.Random(i).randint(0, 50)}).encode() for i in range(300)]
    p = tmp_path/"l.json.gz"
    p.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    for chunk in (1, 7, 64, 1 << 20):
        assert [l for _, l in listing_lines(p, chunk=chunk)] == lines

# ---------------------------------------------------------------- command line

def cli(*args): return run_cli("curate", *args)

def test_cli_bad_input_exit_status(tmp_path):
    r = cli(str(tmp_path/"nowhere"), "-o", str(tmp_path/"out"), "--quiet")
    assert r.code == 1 and "not an ABO root" in r.err and "missing:" in r.err
    root = write_root(tmp_path/"abo", [[listing("A", "img0000001"), "{broken"]], images_for("img0000001"))
    r = cli(str(root), "-o", str(tmp_path/"out"), "--quiet")
    assert r.code == 1 and "listings_0.json.gz:2: malformed listing" in r.err
    r = cli(str(root), "-o", str(tmp_path/"out"), "--quiet", "--on-error", "skip")
    assert r.code == 0, r.err
    assert json.loads((tmp_path/"out/curation_report.json").read_text())["drops"]["malformed_line"] == 1

def test_cli_on_sample_catalogue(tmp_path):
    from abovqa import sample
    root = sample.make_sample_abo(tmp_path/"abo", listings=300, seed=3)
    outs = []
    for w in ("1", "2"):
        r = cli(str(root), "-o", str(tmp_path/f"out{w}"), "--n", "100", "--seed", "5", "--workers", w, "--verify-images")
        assert r.code == 0, r.err
        assert "listings files" in r.err   # the progress bar
        outs.append(json.loads((tmp_path/f"out{w}/curation_report.json").read_text()))
    rep = outs[0]
    assert outs[0] == outs[1]
    assert (tmp_path/"out1/curated.csv").read_bytes() == (tmp_path/"out2/curated.csv").read_bytes()
    assert rep["listings_read"] == 300
    assert sum(rep["drops"].values()) + rep["not_sampled"] + rep["final"] == 300
    df = pd.read_csv(tmp_path/"out1/curated.csv", keep_default_na=False)
    assert list(df.columns) == COLUMNS and len(df) == rep["final"] > 0 and df.image_id.is_unique
    assert all((root/"images/small"/p).is_file() for p in df.image_path)
    assert (df.metadata.str.count("\n") + 1 >= 5).all()

def test_partly_gunzipped_listings_folder_reads_every_file_once(tmp_path):
    root = write_root(tmp_path/"abo", [[listing("A", "img0000001")], [listing("B", "img0000002")], [listing("C", "img0000003")]],
                      images_for("img0000001", "img0000002", "img0000003"))
    f = root/"listings/metadata/listings_1.json.gz"
    f.with_suffix("").write_bytes(gzip.decompress(f.read_bytes())); f.unlink()          # gunzipped in place
    g = root/"listings/metadata/listings_2.json.gz"
    g.with_suffix("").write_bytes(gzip.decompress(g.read_bytes()))                     # a plain copy next to the .gz
    df, rep = run(root)
    assert rep["listings_read"] == 3 and rep["final"] == 3 and sorted(df.item_id) == ["A", "B", "C"]
    assert rep["files"] == ["listings_0.json.gz", "listings_1.json", "listings_2.json.gz"]
