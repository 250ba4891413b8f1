"abovqa.stats and the intervals in metrics.score: cluster bootstrap over images, paired bootstrap, McNemar."
import math
import numpy as np
import pytest
from abovqa import stats as S
from abovqa import metrics as M


def _width(r): return r["ci"][1] - r["ci"][0]

def test_clustered_interval_wider_than_naive_on_a_two_point_gap():
    "A true 2-point gap, 5 questions per image sharing its difficulty: clustering widens the interval (and the paired one)."
    y, img = S.synthetic_scores(n_images=400, per_image=5, accuracy=0.60, image_effect=0.8, seed=3)
    rng = np.random.default_rng(4)
    b = np.where((y == 0) & (rng.random(len(y)) < 0.05), 1.0, y)     # B fixes ~2 points of A's answers
    assert 0.01 < b.mean() - y.mean() < 0.03
    assert _width(S.cluster_bootstrap(y, img)) > 1.5 * _width(S.cluster_bootstrap(y))
    clustered, naive = S.paired_bootstrap(y, b, img), S.paired_bootstrap(y, b)
    assert clustered["diff"] == naive["diff"] and _width(clustered) >= _width(naive) * 0.95

def test_interval_covers_the_truth_and_is_seeded():
    "The 95% cluster interval covers the true accuracy in about 95% of synthetic runs."
    hits = 0
    for seed in range(60):
        y, img = S.synthetic_scores(n_images=100, per_image=4, accuracy=0.5, image_effect=0.7, seed=seed)
        lo, hi = S.cluster_bootstrap(y, img, n_resamples=400)["ci"]
        hits += lo <= 0.5 <= hi
    assert hits >= 52
    y, img = S.synthetic_scores(seed=1)
    assert S.cluster_bootstrap(y, img, seed=5) == S.cluster_bootstrap(y, img, seed=5)
    assert S.cluster_bootstrap(y, img, seed=5) != S.cluster_bootstrap(y, img, seed=6)

def test_identical_pair_is_tied():
    y, img = S.synthetic_scores()
    assert S.paired_bootstrap(y, y, img) == dict(diff=0.0, ci=[0.0, 0.0], p_value=1.0)
    assert S.mcnemar(y, y)["p_value"] == 1.0

def test_mcnemar_matches_scipy():
    from scipy.stats import binomtest, chi2
    for only_a, only_b in [(8, 2), (3, 3), (0, 7), (20, 10), (40, 12)]:
        a = [1] * only_a + [0] * only_b + [1] * 5
        b = [0] * only_a + [1] * only_b + [1] * 5
        r = S.mcnemar(a, b)
        n = only_a + only_b
        want = (binomtest(only_a, n, 0.5).pvalue if n < 25
                else chi2.sf((abs(only_a - only_b) - 1) ** 2 / n, 1))
        assert r["p_value"] == pytest.approx(want, rel=1e-9)

def test_weights_and_nan_columns():
    W = S.bootstrap_weights(7, 50, seed=0)
    assert W.shape == (50, 7) and (W.sum(1) == 7).all()
    m = S.bootstrap_means(np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 0.0]]), ["a", "a", "b"], 20)
    assert m.shape == (20, 2) and np.isfinite(m[:, 0]).all()

def test_bootstrap_speed_10k_rows_1k_resamples():
    "10,000 rows × 1,000 resamples × 6 metrics in a few seconds (the bench figure is in bench/metrics.py)."
    import time
    rng = np.random.default_rng(0)
    v, img = rng.random((10_000, 6)), np.repeat(np.arange(2_000), 5)
    t = time.perf_counter(); S.bootstrap_means(v, img, 1000); dt = time.perf_counter() - t
    assert dt < 5, dt

def test_score_summary_has_intervals_and_breakdown_per_type():
    preds = ["red", "blue", "wood", "2", "yes", "no"] * 10
    refs = ["red", "red", "wood", "two", "yes", "yes"] * 10
    qs = ["What color?", "What color?", "What is it made of?", "How many legs?", "Is it red?", "Is it red?"] * 10
    imgs = [f"i{k // 3}" for k in range(60)]
    s, rows = M.score(preds, refs, qs, metrics=M.LEXICAL, clusters=imgs)
    for m in M.LEXICAL:
        lo, hi = s[f"{m}_ci"]
        assert lo <= s[m] <= hi
    assert s["ci"]["n_resamples"] >= 1000 and s["ci"]["n_clusters"] == 20
    bd = M.breakdown(rows)
    assert {"exact_match_ci_low", "exact_match_ci_high"} <= set(bd.columns)
    assert (bd.exact_match_ci_low <= bd.exact_match).all()
    s0, _ = M.score(preds, refs, qs, metrics=M.LEXICAL)
    assert "exact_match_ci" not in s0    # no clusters, no interval (and the old summary unchanged)
