#!/usr/bin/env bash
# The README's test command (after install): export/clean checks, notebook tests, pytest, one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
       WANDB_MODE=offline OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
export WANDB_DIR="$(mktemp -d)" ABOVQA_HOME="$(mktemp -d)"
passed=0; failed=0
check() { # name, command...
  local name=$1; shift
  if "$@"; then passed=$((passed+1)); echo "ok   $name"; else failed=$((failed+1)); echo "FAIL $name"; fi
}
state() { git status --porcelain --untracked-files=all -- abovqa nbs; }

before=$(state); nbdev_export >/dev/null
check "nbdev_export leaves no diff" test "$before" == "$(state)"
[ "$before" == "$(state)" ] || state

before=$(state); nbdev_clean >/dev/null
check "notebooks are clean" test "$before" == "$(state)"
[ "$before" == "$(state)" ] || state

check "nbdev_proc_nbs (docs pre-processing)" bash -c 'nbdev_proc_nbs >/dev/null 2>&1'

# Notebook tests: nbdev_test runs them in parallel and lists the failures.
nbs=$(find nbs -name '*.ipynb' -not -path '*/.*' -not -name '_*' | wc -l)
log=$(mktemp); nbdev_test --n_workers 2 2>&1 | tee "$log"
nb_failed=$(grep -A1000 'Failed On The Following Notebooks' "$log" | grep -c '\.ipynb' || true)
passed=$((passed + nbs - nb_failed)); failed=$((failed + nb_failed))
echo "notebooks: $((nbs - nb_failed)) passed, $nb_failed failed"

# pytest suites
xml=$(mktemp --suffix .xml)
python -m pytest tests -q -p no:cacheprovider --timeout 900 --junitxml "$xml" "$@"
read -r pp pf < <(python - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try: r = ET.parse(sys.argv[1]).getroot()
except Exception: print(0, 1); sys.exit()
s = r if r.tag == "testsuite" else r.find("testsuite")
t, f, e, sk = (int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
print(t - f - e - sk, f + e + (t == 0))
PY
)
passed=$((passed + pp)); failed=$((failed + pf))
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
