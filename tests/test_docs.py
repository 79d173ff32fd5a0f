"""The documentation cannot drift from the code.

* every ```python block of README.md and docs/**/*.md runs (a page's blocks in order, in one
  namespace, all pages in ONE fresh process so a snippet cannot change this test session's jax
  settings); a block preceded by ``<!-- skip-test -->`` is skipped (for ones that need data or
  long runs);
* every ``>>>`` example in the docstrings of ``jinit`` passes under doctest;
* every public name of ``jinit`` has a ``::: jinit.NAME`` entry in docs/api/*.md;
* the RST-to-Markdown conversion of docstrings does what the docs build relies on;
* ``mkdocs build --strict`` succeeds (skipped, with the reason, without mkdocs installed).

Run as a script (``python tests/test_docs.py --snippets PAGE...``) it is the snippet runner.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import importlib.util
import io
import json
import os
import pathlib
import pkgutil
import re
import subprocess
import sys
import textwrap
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SKIP_MARK = "<!-- skip-test -->"
_FENCE_OPEN = re.compile(r"^(?P<ind>[ \t]*)```(?P<lang>[\w+-]*)[^\n`]*$")


# ----------------------------------------------------------------------------- snippet parsing


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """``(line number, code, skipped)`` of each ```python block of a markdown text."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        ind, lang = m["ind"], m["lang"].lower()
        close = re.compile(rf"^{re.escape(ind)}```\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        if lang in ("python", "py"):
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            skipped = k >= 0 and lines[k].strip() == SKIP_MARK
            code = textwrap.dedent("\n".join(lines[i + 1 : j]))
            blocks.append((i + 2, code, skipped))
        i = j + 1
    return blocks


def doc_pages() -> list[pathlib.Path]:
    """README.md and the hand-written pages of docs/ (not the generated API pages/tables)."""
    pages = [REPO / "README.md"] + sorted(DOCS.rglob("*.md"))
    skip_dirs = {DOCS / "api", DOCS / "benchmarks", DOCS / "_ext"}
    return [p for p in pages if p.is_file() and not any(d in p.parents for d in skip_dirs)]


def _run_page(path: pathlib.Path) -> dict:
    """Runs one page's blocks in one namespace; stops at the first failing block."""
    ns: dict = {"__name__": f"docs_snippet_{path.stem}"}
    ran = 0
    t0 = time.perf_counter()
    out = io.StringIO()
    for line, code, skipped in python_blocks(path.read_text(encoding="utf-8")):
        if skipped:
            continue
        try:
            with contextlib.redirect_stdout(out):
                if code.lstrip().startswith(">>>"):
                    test = doctest.DocTestParser().get_doctest(code, ns, path.name, str(path), line)
                    runner = doctest.DocTestRunner(
                        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
                    )
                    runner.run(test, out=out.write)
                    if runner.failures:
                        raise AssertionError(out.getvalue()[-3000:])
                else:
                    exec(compile(code, f"{path}:{line}", "exec"), ns)
        except BaseException:  # noqa: BLE001 - reported to the parent process
            return {
                "ok": False,
                "line": line,
                "ran": ran,
                "error": traceback.format_exc(limit=8)[-4000:],
                "stdout": out.getvalue()[-2000:],
            }
        ran += 1
    return {"ok": True, "ran": ran, "seconds": round(time.perf_counter() - t0, 2)}


def _snippet_main(paths: list[str]) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    results = {}
    for p in paths:
        results[p] = _run_page(pathlib.Path(p))
    print("JINIT-SNIPPETS " + json.dumps(results))


if __name__ == "__main__" and sys.argv[1:2] == ["--snippets"]:  # PYTHONPATH names REPO
    _snippet_main(sys.argv[2:])
    sys.exit(0)


# -------------------------------------------------------------------------------------- tests

import pytest  # noqa: E402

import jinit  # noqa: E402


def _load(path: pathlib.Path):
    """Imports a script that is not in a package (docs/_ext/api_pages.py) from its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # e.g. dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


api_pages = _load(DOCS / "_ext" / "api_pages.py")


def _runnable_pages() -> list[pathlib.Path]:
    return [p for p in doc_pages() if any(not s for _, _, s in python_blocks(p.read_text()))]


PAGES = _runnable_pages()


@pytest.fixture(scope="module")
def snippet_results(tmp_path_factory):
    """Runs the snippets of every page in one fresh Python process (cwd: a temp dir)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("MPLBACKEND", "Agg")
    proc = subprocess.run(
        [sys.executable, __file__, "--snippets", *map(str, PAGES)],
        cwd=tmp_path_factory.mktemp("snippets"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("JINIT-SNIPPETS "):
            return json.loads(line.removeprefix("JINIT-SNIPPETS "))
    pytest.fail(f"the snippet runner crashed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_doc_snippets_run(page, snippet_results):
    res = snippet_results[str(page)]
    assert res["ok"], (
        f"{page.relative_to(REPO)}: the ```python block at line {res['line']} failed "
        f"({res['ran']} earlier block(s) ran). Fix the example, or if it needs data or a long "
        f"run put {SKIP_MARK} on the line before its fence.\n{res['error']}\n"
        f"stdout:\n{res['stdout']}"
    )
    assert res["ran"] > 0


def test_ci_runs_the_readme_test_command():
    """CI (.ci/run) runs exactly the README's test command, plus ``--durations=25``."""

    def pytest_lines(text):
        return [
            re.sub(r"^python3? ", "python ", line.strip())
            for line in text.splitlines()
            if re.match(r"\s*python3? -m pytest\b", line)
        ]

    readme = pytest_lines((REPO / "README.md").read_text())
    ci = pytest_lines((REPO / ".ci" / "run").read_text())
    assert readme == ["python -m pytest -q -n 2 --dist loadgroup"], readme
    assert ci == [readme[0] + " --durations=25"], ci


def test_snippet_parser():
    text = textwrap.dedent(
        """\
        ```python
        a = 1
        ```

        <!-- skip-test -->
        ```python
        load_the_whole_dataset()
        ```

        1. a list item

            ```python
            b = a + 1
            ```

        ```bash
        echo not python
        ```
        """
    )
    blocks = python_blocks(text)
    assert [(c, s) for _, c, s in blocks] == [
        ("a = 1", False),
        ("load_the_whole_dataset()", True),
        ("b = a + 1", False),
    ]
    assert blocks[0][0] == 2


def _jinit_modules() -> list[str]:
    mods = ["jinit"]
    for info in pkgutil.iter_modules(jinit._src.__path__, "jinit._src."):
        mods.append(info.name)
    return mods


def _modules_with_examples() -> list:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for name in _jinit_modules():
        mod = importlib.import_module(name)
        if any(t.examples for t in finder.find(mod)):
            found.append(name)
    if not found:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no >>> docstring examples"))]
    return found


@pytest.mark.parametrize("module", _modules_with_examples())
def test_docstring_examples(module):
    mod = importlib.import_module(module)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = io.StringIO()
    for test in finder.find(mod, globs={"jinit": jinit, **vars(mod)}):
        if test.examples and test.name.startswith(module):
            runner.run(test, out=out.write)
    assert not runner.failures, f"doctest failures in {module}:\n{out.getvalue()[-6000:]}"


def public_names() -> set[str]:
    names = getattr(jinit, "__all__", None)
    if names is None:
        names = [n for n in dir(jinit) if not n.startswith("_")]
    return set(names)


def documented_names() -> dict[str, str]:
    found = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        for m in re.finditer(r"^::: jinit\.(\w+)\s*$", page.read_text(), flags=re.M):
            found[m[1]] = page.name
    return found


def test_every_public_name_is_in_the_api_reference():
    missing = sorted(public_names() - set(documented_names()))
    assert not missing, (
        f"public names of jinit missing from the API reference (docs/api/*.md): {missing}. "
        "Run `python docs/_ext/api_pages.py` to regenerate the pages."
    )


def test_api_reference_names_exist():
    stale = sorted(set(documented_names()) - public_names())
    assert not stale, f"docs/api/*.md documents names jinit does not export: {stale}"


def test_api_generator_sees_every_public_name():
    # The generator reads jinit/__init__.py statically; it must agree with the import.
    static = {name for name, _ in api_pages.public_imports()}
    assert public_names() <= static, (
        f"names exported by jinit but not as `from jinit._src.m import x as x` in "
        f"jinit/__init__.py: {sorted(public_names() - static)}"
    )


def _griffe_rst():
    spec = importlib.util.spec_from_file_location("griffe_rst", DOCS / "_ext" / "griffe_rst.py")
    if importlib.util.find_spec("griffe") is None:
        pytest.skip("griffe (mkdocstrings[python]) is not installed: pip install -e '.[docs]'")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rst_docstrings_become_markdown():
    conv = _griffe_rst().rst_to_markdown
    text = textwrap.dedent(
        """\
        Summary with :math:`\\sigma^2 / n` and :func:`he_normal` and :func:`helper`.

        .. math::
           W \\sim N(0, 2 / n)

        Usage::

            w = init(key, (3, 4))

        Args:
          x: see :class:`jinit.LSUVReport` and :meth:`LSUVReport.check`."""
    )
    md = conv(text, {"he_normal", "LSUVReport", "theory"}, {"q_map": "jinit.theory.q_map"})
    assert "\\(\\sigma^2 / n\\)" in md
    assert "[`he_normal`][jinit.he_normal]" in md and "`helper`" in md
    assert "$$\nW \\sim N(0, 2 / n)\n$$" in md
    assert "Usage:\n\n```python\nw = init(key, (3, 4))\n```" in md
    assert "[`jinit.LSUVReport`][jinit.LSUVReport]" in md
    assert "[`LSUVReport.check`][jinit.LSUVReport]" in md
    assert "Args:\n  x:" in md  # Google sections untouched
    assert conv(":func:`q_map`", set(), {"q_map": "jinit.theory.q_map"}) == (
        "[`q_map`][jinit.theory.q_map]"
    )
    assert conv(md, {"he_normal", "LSUVReport"}) == md  # idempotent


def test_mkdocs_build_strict(tmp_path):
    needed = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"docs toolchain not installed ({missing}): pip install -e '.[docs]'")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    assert (tmp_path / "site" / "api" / "index.html").is_file()
