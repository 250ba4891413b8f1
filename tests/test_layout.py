"""The package's layout (issue #14): light modules load no torch; the module graph has no cycles or back-edges; production
code never imports the test helpers; modules stay small; `__all__` holds no private or @patch names.

Rules that today's code still breaks are listed, one by one, in `KNOWN_VIOLATIONS`: a new violation fails, and so does a
listed one that is gone (delete its entry, so the list only shrinks)."""
import ast, json, os, re, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG, NBS = ROOT/"abovqa", ROOT/"nbs"

LIGHT = ["core", "vocab", "cli", "sample", "fixtures", "curate", "download", "quota", "gemini", "generate", "fakegemini", "split", "metrics", "stats", "report",
         "compare", "judge"]   # import without torch (cli: `abovqa --help` starts fast); the model phases load it
TEST_HELPERS = {"sample", "testing", "fixtures", "fakegemini"}   # the synthetic catalogue, stand-in models, shared fixtures, the fake Gemini server
HELPER_USERS = TEST_HELPERS | {"demo", "cli"}           # may import them (cli: by name, from its COMMANDS table)
MAX_LINES = 650

KNOWN_VIOLATIONS = set()   # violations still to fix (none left): an entry here must name a real, current violation

# ------------------------------------------------------------------ importing a light module loads no torch

def loads_torch(module: str) -> bool:
    "Whether `import abovqa.<module>` in a fresh interpreter puts torch in `sys.modules`."
    code = f"import sys, abovqa.{module}; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[-1] == "True"

@pytest.mark.parametrize("module", LIGHT)
def test_light_module_loads_no_torch(module):
    assert not loads_torch(module), f"import abovqa.{module} loads torch: import it inside the function that needs it"

# ------------------------------------------------------------------ the module graph

def modules() -> list[str]:
    "The exported modules, in the order of the notebooks that export them (`#| default_exp`, notebooks by file name)."
    order = []
    for nb in sorted(n for n in NBS.glob("*.ipynb") if not n.name.startswith("_")):   # _x.ipynb: scratch, never exported
        for c in json.loads(nb.read_text())["cells"]:
            m = re.search(r"^#\|\s*default_exp\s+(\S+)", "".join(c["source"]), re.M)
            if m and c["cell_type"] == "code": order.append(m.group(1)); break
    return order

def tree(module: str) -> ast.Module: return ast.parse((PKG/f"{module}.py").read_text())

def imports(t: ast.Module, module: str) -> set[str]:
    "abovqa modules `module` (parsed: `t`) imports, at the top or in functions; a string 'abovqa.X:fn' (cli's table) too."
    out = set()
    for n in ast.walk(t):
        if isinstance(n, ast.ImportFrom) and (n.level == 1 or (n.module or "").split(".")[0] == "abovqa"):
            sub = (n.module or "").removeprefix("abovqa").lstrip(".")
            out |= {sub.split(".")[0]} if sub else {a.name for a in n.names}
        elif isinstance(n, ast.Import): out |= {a.name.split(".")[1] for a in n.names if a.name.startswith("abovqa.")}
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and (m := re.fullmatch(r"abovqa\.(\w+)(:\w+)?", n.value)):
            out.add(m.group(1))
    return out - {module}

def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    "One cycle per strongly connected group of two or more modules (or a module importing itself)."
    index, low, stack, found, n = {}, {}, [], [], [0]
    def visit(v):   # Tarjan
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph: continue
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in stack: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v: comp.append(w)
            comp.append(v)
            if len(comp) > 1 or v in graph[v]: found.append(sorted(comp))
    for v in sorted(graph):
        if v not in index: visit(v)
    return found

def patched_names(t: ast.Module) -> set[str]:
    "Functions grown onto a class: decorated with fastcore's @patch / @patch_to, or assigned (`Cls.m = fn`)."
    def is_patch(d):
        d = d.func if isinstance(d, ast.Call) else d
        return (d.id if isinstance(d, ast.Name) else getattr(d, "attr", "")) in ("patch", "patch_to")
    out = {n.name for n in t.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(map(is_patch, n.decorator_list))}
    for n in t.body:
        if isinstance(n, ast.Assign) and any(isinstance(x, ast.Attribute) or (isinstance(x, ast.Tuple) and
                                             all(isinstance(e, ast.Attribute) for e in x.elts)) for x in n.targets):
            vals = n.value.elts if isinstance(n.value, ast.Tuple) else [n.value]
            out |= {v.id for v in vals if isinstance(v, ast.Name)}
    return out

def dunder_all(t: ast.Module) -> list[str]:
    return [e.value for n in t.body if isinstance(n, (ast.Assign, ast.AugAssign))
            and any(getattr(x, "id", None) == "__all__" for x in getattr(n, "targets", [getattr(n, "target", None)]))
            for e in getattr(n.value, "elts", []) if isinstance(e, ast.Constant)]

def violations() -> set[tuple[str, str, str]]:
    "Every broken layout rule, as (rule, module, other module or name)."
    order = modules(); rank = {m: i for i, m in enumerate(order)}
    graph = {m: imports(tree(m), m) & set(order) for m in order}
    out = {("cycle", " -> ".join(c), "") for c in cycles(graph)}
    out |= {("back-edge", m, d) for m in order for d in graph[m] if rank[d] > rank[m]}
    out |= {("imports-test-helper", m, d) for m in order if m not in HELPER_USERS for d in graph[m] & TEST_HELPERS}
    out |= {("too-long", m, "") for m in order if len((PKG/f"{m}.py").read_text().splitlines()) > MAX_LINES}
    for m in order:
        t = tree(m); patched = patched_names(t)
        out |= {("private-in-__all__", m, x) for x in dunder_all(t) if x.startswith("_")}
        out |= {("patched-in-__all__", m, x) for x in dunder_all(t) if x in patched and not x.startswith("_")}
    return out

def test_every_module_has_a_notebook():
    "Each abovqa/*.py is exported by one notebook (a module whose notebook moved or went is a stale file to delete)."
    order = modules()
    assert len(order) == len(set(order)), f"two notebooks export the same module: {order}"
    assert sorted(p.stem for p in PKG.glob("*.py") if not p.stem.startswith("_")) == sorted(order)

def test_module_graph():
    new = violations() - KNOWN_VIOLATIONS
    assert not new, "layout rules broken (cycle, back-edge: a module importing one from a later notebook, a production " \
                    "module importing sample/testing/fakegemini, a module over 650 lines, a private or @patch name in " \
                    f"__all__): {sorted(new)}"

def test_known_violations_still_exist():
    gone = KNOWN_VIOLATIONS - violations()
    assert not gone, f"fixed: delete these from tests/test_layout.py KNOWN_VIOLATIONS: {sorted(gone)}"

def test_rules_catch_violations():
    "The checks themselves: a cycle, a back-edge, a patched name, a helper import are all found."
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    t = ast.parse("from fastcore.basics import patch\n__all__ = ['f', 'g', 'h', '_p']\n"
                  "@patch\ndef f(self: C): pass\ndef g(self): pass\nC.g = g\ndef h(): pass")
    assert patched_names(t) == {"f", "g"} and dunder_all(t) == ["f", "g", "h", "_p"]
    t = ast.parse("from .core import a\nimport abovqa.stats\ndef f():\n    from abovqa.metrics import score\n    from . import split\n"
                  "T = {'x': ('abovqa.sample:cli', 'help')}\nNOTE = 'abovqa.demo is mentioned'")
    assert imports(t, "m") == {"core", "stats", "metrics", "split", "sample"}
    assert "sample" in imports(tree("cli"), "cli")   # cli loads every command module by name (importlib)

# ------------------------------------------------------------------ README.md is hand-written

def readme_rendered(folder: Path, monkeypatch) -> bool:
    "Whether `nbdev_readme` as nbdev_prepare and nbdev_docs run it (`chk_time=True`) would render README.md in `folder`."
    import nbdev.config, nbdev.quarto
    calls = []
    def render(*a, **k): calls.append(a); raise RuntimeError("would render README.md")   # no quarto needed
    monkeypatch.setattr(nbdev.quarto, "proc_nbs", render); monkeypatch.setattr(nbdev.quarto, "_sprun", render)
    monkeypatch.chdir(folder); nbdev.config.get_config.cache_clear()
    try: nbdev.quarto.nbdev_readme.__wrapped__(chk_time=True)
    except RuntimeError: pass
    finally: nbdev.config.get_config.cache_clear()
    return bool(calls)

def test_readme_not_overwritten(tmp_path, monkeypatch):
    "settings.ini's `readme_nb` names no notebook, so nbdev never renders index.ipynb over the hand-written README.md."
    (tmp_path/"nbs").mkdir()
    for f in ["settings.ini", "README.md", "nbs/index.ipynb"]: (tmp_path/f).write_bytes((ROOT/f).read_bytes())
    os.utime(tmp_path/"README.md", (0, 0))                     # older than index.ipynb: nbdev would re-render it
    assert not readme_rendered(tmp_path, monkeypatch)
    assert (tmp_path/"README.md").read_bytes() == (ROOT/"README.md").read_bytes()
    ini = (tmp_path/"settings.ini").read_text()
    assert re.search(r"^readme_nb = none$", ini, re.M)
    (tmp_path/"settings.ini").write_text(re.sub(r"^readme_nb = .*$", "readme_nb = index.ipynb", ini, flags=re.M))
    assert readme_rendered(tmp_path, monkeypatch)              # the check works: nbdev's default would render it
