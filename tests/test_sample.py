"""Validate `abovqa sample-abo` output against the ABO format doc (../shared/abo-format.md).

The checks here are written from the doc, not from the generator: file layout and line counts, the exact
`json.dumps` line format, the shape of every key, the image table, every image decoding at the right small size,
the awkward real cases, determinism, the command line, and pictures that show what the listing says."""
import gzip, hashlib, json, math, re
import numpy as np, pandas as pd, pytest
from PIL import Image
from abovqa.sample import AWKWARD_CASES, COLOR_RGB, DARK, draw_product, file_counts, find_awkward, make_sample_abo
from abovqa.vocab import COLORS, SHAPES
from abovqa.fixtures import run_cli

N = 300
FILES = [f"listings_{c}.json.gz" for c in "0123456789abcdef"]
ALWAYS = {"item_id", "country", "domain_name", "marketplace", "product_type", "item_name"}
TAGGED = {"item_name", "brand", "bullet_point", "item_keywords", "material", "fabric_type", "finish_type", "item_shape",
          "style", "pattern", "model_name", "product_description"}
KEYS = TAGGED | ALWAYS | {"color", "node", "model_number", "model_year", "item_weight", "item_dimensions", "color_code",
                          "main_image_id", "other_image_id", "spin_id", "3dmodel_id"}
TAGS = set("en_US en_GB en_IN en_CA en_AU en_AE en_SG es_MX es_ES es_US nl_NL it_IT zh_CN ko_KR pt_BR tr_TR".split())
IMAGE_ID = re.compile(r"^[0-9A-Za-z+-]{11}$")

@pytest.fixture(scope="module")
def root(tmp_path_factory): return make_sample_abo(tmp_path_factory.mktemp("abo")/"root", listings=N, seed=42)

@pytest.fixture(scope="module")
def lines(root): return {n: gzip.open(root/"listings/metadata"/n, "rt", encoding="utf-8").read().splitlines() for n in FILES}

@pytest.fixture(scope="module")
def listings(lines): return [json.loads(l) for n in FILES for l in lines[n]]

@pytest.fixture(scope="module")
def images(root): return pd.read_csv(root/"images/metadata/images.csv.gz", keep_default_na=False)

# ---------------------------------------------------------------- layout and line format
def test_layout(root):
    test = sorted(p.name for p in (root/"listings/metadata").iterdir())
    assert test == sorted(FILES)
    assert (root/"images/metadata/images.csv.gz").is_file()
    dirs = [p.name for p in (root/"images/small").iterdir()]
    assert dirs and all(re.fullmatch(r"[0-9a-f]{2}", d) for d in dirs)
    assert sorted(p.name for p in root.iterdir()) == ["images", "listings"]

def test_line_counts_split_like_abo(lines):
    counts = [len(lines[n]) for n in FILES]
    per = math.ceil(N/16)
    assert sum(counts) == N and counts == [per]*15 + [N - 15*per]
    assert file_counts(147_702) == [9232]*15 + [9222]     # the real split
    small = file_counts(40)
    assert sum(small) == 40 and max(small) - min(small) <= 1 and min(small) > 0

def test_lines_are_json_dumps_defaults(lines):
    for n in FILES:
        for i, l in enumerate(lines[n]):
            assert l.isascii(), f"{n}:{i + 1} has raw non-ASCII"
            assert json.dumps(json.loads(l)) == l, f"{n}:{i + 1} is not json.dumps default formatting"
    assert any("\\u" in l for n in FILES for l in lines[n]), "non-ASCII text should be \\u-escaped somewhere"

# ---------------------------------------------------------------- key shapes
def _is_num(v): return isinstance(v, (int, float)) and not isinstance(v, bool)

def check_listing(l: dict) -> list[str]:
    "Everything wrong with one listing, per the format doc (empty when valid)."
    err = []
    if not ALWAYS <= set(l): err.append(f"missing {ALWAYS - set(l)}")
    if set(l) - KEYS: err.append(f"unknown keys {set(l) - KEYS}")
    if not (isinstance(l.get("item_id"), str) and len(l["item_id"]) == 10): err.append("item_id")
    if not re.fullmatch(r"[A-Z]{2}", str(l.get("country"))): err.append("country")
    if not str(l.get("domain_name")).startswith("amazon."): err.append("domain_name")
    if not isinstance(l.get("marketplace"), str): err.append("marketplace")
    if "main_image_id" in l and not IMAGE_ID.match(str(l["main_image_id"])): err.append("main_image_id")
    if "other_image_id" in l and not (isinstance(l["other_image_id"], list) and all(IMAGE_ID.match(str(i)) for i in l["other_image_id"])):
        err.append("other_image_id")
    for k in TAGGED & set(l):
        if not (isinstance(l[k], list) and l[k] and all(isinstance(e, dict) and set(e) == {"language_tag", "value"}
                and e["language_tag"] in TAGS and isinstance(e["value"], str) for e in l[k])): err.append(k)
    if "color" in l and not (isinstance(l["color"], list) and all(
            {"language_tag", "value"} <= set(e) <= {"language_tag", "value", "standardized_values"} and e["language_tag"] in TAGS
            and all(isinstance(s, str) for s in e.get("standardized_values", [])) for e in l["color"])): err.append("color")
    pt = l.get("product_type")
    if not (isinstance(pt, list) and len(pt) == 1 and set(pt[0]) == {"value"} and re.fullmatch(r"[A-Z][A-Z_]*", pt[0]["value"])):
        err.append("product_type")
    if "model_number" in l and not (set(l["model_number"][0]) == {"value"} and isinstance(l["model_number"][0]["value"], str)):
        err.append("model_number")
    if "model_year" in l and not (set(l["model_year"][0]) == {"value"} and type(l["model_year"][0]["value"]) is int):
        err.append("model_year")
    if "node" in l and not all(set(n) == {"node_id", "node_name"} and type(n["node_id"]) is int
                               and n["node_name"].startswith("/") for n in l["node"]): err.append("node")
    for w in l.get("item_weight", []):
        if not (set(w) == {"normalized_value", "unit", "value"} and _is_num(w["value"]) and set(w["normalized_value"]) == {"unit", "value"}):
            err.append("item_weight")
    if "item_dimensions" in l:
        d = l["item_dimensions"]
        if not (isinstance(d, dict) and set(d) == {"height", "length", "width"}): err.append("item_dimensions")
        else:
            for v in d.values():
                nv = v["normalized_value"]
                ok = set(v) == {"normalized_value", "unit", "value"} and nv["unit"] == "inches" and _is_num(v["value"])
                if ok and v["unit"] == "centimeters": ok = abs(nv["value"] - v["value"]/2.54) < 0.01
                if not ok: err.append("item_dimensions")
    if "color_code" in l and not all(re.fullmatch(r"#[0-9A-F]{6}", c) for c in l["color_code"]): err.append("color_code")
    if "3dmodel_id" in l and l["3dmodel_id"] != l["item_id"]: err.append("3dmodel_id")
    return err

def test_every_key_has_its_real_shape(listings):
    bad = {f"{l['item_id']}@{l['domain_name']}": e for l in listings if (e := check_listing(l))}
    assert not bad, bad
    assert len({(l["item_id"], l["domain_name"]) for l in listings}) == len(listings), "(item_id, domain_name) must be unique"
    seen = set().union(*map(set, listings))
    assert {"node", "model_number", "model_year", "item_weight", "item_dimensions", "color_code", "product_description",
            "style", "pattern", "item_shape", "material"} <= seen
    assert any("<" in e["value"] for l in listings for e in l.get("product_description", [])), "descriptions are HTML"

def test_validator_can_fail(listings):
    good = next(l for l in listings if "node" in l and "model_year" in l and "item_dimensions" in l)
    assert check_listing(good) == []
    for key, bad in [("product_type", "SHOES"), ("model_year", [{"value": "2017"}]), ("node", [{"node_id": "1", "node_name": "x"}]),
                     ("item_name", [{"value": "no tag"}]), ("item_dimensions", [1, 2]), ("main_image_id", "short")]:
        assert key in check_listing({**good, key: bad}), key
    assert check_listing({k: v for k, v in good.items() if k != "country"})

# ---------------------------------------------------------------- awkward cases
def test_every_awkward_case_is_present(root, listings):
    found = find_awkward(root, listings)
    assert set(found) == set(AWKWARD_CASES)
    assert [c for c, v in found.items() if not v] == []

def test_awkward_cases_directly(listings, images):
    "A few cases checked by hand, straight from the doc's wording."
    assert any(l["item_name"][0]["language_tag"] == "zh_CN" and l["item_name"][1]["language_tag"] == "en_US" for l in listings)
    assert any(e["language_tag"] == "tr_TR" and e["value"] in {"Rot", "Gelb", "Grün", "Blau", "Lila", "Braun", "Grau", "Schwarz", "Rosa"}
               for l in listings for e in l.get("color", []))
    assert any("main_image_id" not in l for l in listings)
    mains = pd.Series([l.get("main_image_id") for l in listings]).dropna()
    assert mains.duplicated().any()
    assert pd.Series([l["item_id"] for l in listings]).duplicated().any()
    assert any(n["node_name"].startswith(("/Kategoriler/", "/Categorías/")) for l in listings for n in l.get("node", []))
    assert any("standardized_values" not in e for l in listings for e in l.get("color", []))
    assert any("standardized_values" in e for l in listings for e in l.get("color", []))
    bullets = [e["value"] for l in listings for e in l.get("bullet_point", [])]
    assert "None" in bullets and "No Warranty" in bullets
    assert ((images.height == 30) & (images.width == 500)).sum() >= 1
    assert images.path.str.endswith(".png").sum() >= 1
    other = {i for l in listings for i in l.get("other_image_id", [])}
    assert other and other <= set(images.image_id) and other - set(mains)

def test_awkward_detectors_can_fail(root, listings):
    for case in ["non_english_first", "no_main_image", "junk_bullets", "tr_tr_german_color", "minimal_record"]:
        hits = set(find_awkward(root, listings)[case])
        rest = [l for l in listings if f"{l['item_id']}@{l['domain_name']}" not in hits]
        assert find_awkward(root, rest)[case] == [], case

# ---------------------------------------------------------------- images
def test_images_csv(root, images, listings):
    with gzip.open(root/"images/metadata/images.csv.gz", "rt") as f: assert f.readline() == "image_id,height,width,path\n"
    assert list(images.image_id) == sorted(images.image_id), "sorted by image_id"
    assert images.image_id.is_unique and images.image_id.map(lambda i: bool(IMAGE_ID.match(i))).all()
    assert any("+" in i or "-" in i for i in images.image_id)
    assert images.path.str.fullmatch(r"([0-9a-f]{2})/\1[0-9a-f]{6}\.(jpg|png)").all() and images.path.is_unique
    assert (images[["height", "width"]] >= 1).all().all() and (images[["height", "width"]] <= 2560).all().all()
    assert (images[["height", "width"]].max(axis=1) > 256).mean() > 0.8, "originals are mostly large"
    assert (images.height != images.width).any()
    referenced = {l["main_image_id"] for l in listings if "main_image_id" in l} | {i for l in listings for i in l.get("other_image_id", [])}
    assert referenced == set(images.image_id)

def test_every_image_decodes_at_its_small_size(root, images):
    for row in images.itertuples():
        p = root/"images/small"/row.path
        with Image.open(p) as im:
            assert im.format == ("PNG" if row.path.endswith(".png") else "JPEG"), row.path
            w, h = im.size
        big = max(row.height, row.width)
        assert max(w, h) <= 256 and w <= row.width and h <= row.height, (row, im.size)   # never upscaled
        if big <= 256: assert (h, w) == (row.height, row.width), row
        else:
            assert max(w, h) == 256, row
            assert abs(h - row.height*256/big) <= 1 and abs(w - row.width*256/big) <= 1, (row, im.size)   # aspect kept
    banner = images[(images.height == 30) & (images.width == 500)].iloc[0]
    assert Image.open(root/"images/small"/banner.path).size == (256, 15)

# ---------------------------------------------------------------- the pictures show the metadata
PAL = np.array([COLOR_RGB[c] for c in COLORS] + [DARK, (250, 250, 250)], dtype=float)

def _labels(img):
    "Nearest palette entry of each pixel: an index into COLORS, then DARK, then white."
    a = np.asarray(img.convert("RGB"), dtype=np.float32)
    return ((a**2).sum(-1)[..., None] - 2*a @ PAL.T.astype(np.float32) + (PAL**2).sum(-1)).argmin(-1)

def _en(l, k):
    v = next((e["value"] for e in l.get(k, []) if e["language_tag"].startswith("en_")), None)
    return v.lower() if v else None

@pytest.fixture(scope="module")
def pictured(root, images, listings):
    "(listing, palette labels of its main image) for the listings with an English colour."
    paths = dict(zip(images.image_id, images.path))
    return [(l, _labels(Image.open(root/"images/small"/paths[l["main_image_id"]])))
            for l in listings if "main_image_id" in l and _en(l, "color") in COLORS]

def test_main_image_colour_is_the_listed_colour(pictured):
    n = 0
    for l, lab in pictured:
        counts = np.bincount(lab.ravel(), minlength=len(PAL))[:len(COLORS)]
        assert COLORS[counts.argmax()] == _en(l, "color"), (l["item_id"], l["main_image_id"])
        n += 1
    assert n > N/3

def test_main_image_shape_and_pattern(pictured):
    "Bodies of cases, lamps and mugs (nothing else in the body colour): aspect ratio by shape, white runs by pattern."
    n = 0
    for l, lab in pictured:
        c, shape, pattern = _en(l, "color"), _en(l, "item_shape"), _en(l, "pattern")
        if l["product_type"][0]["value"] not in ("CELLULAR_PHONE_CASE", "LAMP", "DRINKING_CUP") or c in ("yellow", "orange", "pink"): continue
        ys, xs = np.nonzero(lab == COLORS.index(c))
        aspect = (xs.max() - xs.min() + 1)/(ys.max() - ys.min() + 1)
        if shape in ("rectangular", "oval"): assert aspect > 1.4, (l["item_id"], shape, aspect)
        elif shape in SHAPES: assert 0.75 < aspect < 1.33, (l["item_id"], shape, aspect)
        body = lab[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        runs = max(_inner_white_runs(row == COLORS.index(c), row == len(COLORS) + 1) for row in body)
        if pattern == "solid": assert runs == 0, (l["item_id"], pattern)
        elif pattern in ("striped", "dotted"): assert runs >= 2, (l["item_id"], pattern, runs)
        n += 1
    assert n > 20

def _inner_white_runs(body, white, min_len=2):
    "How many runs of >= min_len white pixels lie between body-colour pixels in one row."
    idx = np.nonzero(body)[0]
    if len(idx) < 2: return 0
    seg = white[idx[0]:idx[-1] + 1].astype(int)
    edges = np.diff(np.r_[0, seg, 0]); starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    return int(((ends - starts) >= min_len).sum())

def test_draw_product_rejects_unknown_words():
    for args in [("sofa", "red", "round"), ("mug", "teal", "round"), ("mug", "red", "hexagonal"), ("mug", "red", "round", "plaid")]:
        with pytest.raises(ValueError, match="unknown"): draw_product(*args)

# ---------------------------------------------------------------- determinism and the command line
def _digest(root): return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}

def test_same_seed_same_bytes(tmp_path):
    a, b = (_digest(make_sample_abo(tmp_path/n, listings=48, seed=3)) for n in "ab")
    assert a == b and len(a) > 18
    c = _digest(make_sample_abo(tmp_path/"c", listings=48, seed=4, images=False))
    assert all(a[f"listings/metadata/{n}"] != c[f"listings/metadata/{n}"] for n in FILES)
    assert a["images/metadata/images.csv.gz"] != c["images/metadata/images.csv.gz"]

def _cli(*args): return run_cli("sample-abo", *args)

def test_cli(tmp_path):
    r = _cli(str(tmp_path/"out"), "--listings", "48", "--seed", "5", "--no-images")
    assert r.code == 0, r.err
    assert "48 listings" in r.out and "image rows" in r.out
    assert not (tmp_path/"out/images/small").exists()
    ref = make_sample_abo(tmp_path/"ref", listings=48, seed=5, images=False)
    assert _digest(tmp_path/"out") == _digest(ref)
    bad = _cli(str(tmp_path/"bad"), "--listings", "5")
    assert bad.code == 2 and "at least" in bad.err
    assert _cli("--help").out.count("--no-images") >= 1
