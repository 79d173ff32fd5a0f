"""MkDocs hooks (registered in mkdocs.yml): the generated parts of the site.

* ``on_config``: drops nav entries whose page does not exist yet (pages are written by
  different people at different times; the build must stay warning-free meanwhile), and adds
  the pages the nav does not list yet to the section of their folder (``docs/experiments/`` to
  Experiments, ``docs/api/`` to API reference, top-level pages to Guides).
* ``on_page_markdown`` expands these markers:

  - ``<!-- guide-links -->``       (index.md) links to the guide pages that exist;
  - ``<!-- experiment-pages -->``  (experiments/index.md) one line per study page;
  - ``<!-- benchmark-tables -->``  (benchmarks.md) one section per script in benchmarks/, with
    the table it wrote to docs/benchmarks/NAME.md, or a "not yet run" note;
  - ``<!-- api-summary ... -->``   (api/*.md) a table of the page's ``::: jinit.X`` entries with
    the first line of each docstring.
"""

from __future__ import annotations

import importlib.util
import logging
import pathlib
import re
import sys
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import api_pages  # noqa: E402
from griffe_rst import RSTToMarkdown  # noqa: E402

log = logging.getLogger("mkdocs.hooks.jinit")

# The guides, in reading order: (page, title, one line). Only the ones that exist are linked.
GUIDES = [
    (
        "conventions.md",
        "Conventions",
        "fans, layouts, gains and what every scale means, across "
        "JAX, Flax, PyTorch, Keras and Haiku",
    ),
    ("initializers.md", "Initializers", "the catalogue: formulas, papers and when to use which"),
    ("lsuv.md", "LSUV", "data-dependent initialization of a linen or NNX model in one jitted pass"),
    (
        "diagnosing.md",
        "Diagnostics and theory",
        "measuring a network at initialization and choosing the scale from mean-field theory",
    ),
    ("experiments/index.md", "Experiments", "the studies on real data, with figures and tables"),
    ("benchmarks.md", "Benchmarks", "measured speed, side by side, and how to rerun it"),
    ("api/index.md", "API reference", "every public name, with its formula and source"),
    (
        "contributing.md",
        "Contributing",
        "layout, adding an initializer or a study, running the tests, docs and benchmarks",
    ),
]


def _load_run_all():
    path = REPO / "benchmarks" / "run_all.py"
    spec = importlib.util.spec_from_file_location("jinit_run_all", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------------- nav


def _prune(items: list[Any], docs_dir: pathlib.Path) -> list[Any]:
    out = []
    for item in items:
        if isinstance(item, dict):
            ((title, value),) = item.items()
        else:
            title, value = None, item
        if isinstance(value, list):
            value = _prune(value, docs_dir)
            if not value:
                continue
        elif isinstance(value, str) and not re.match(r"^[a-z]+://", value):
            if not (docs_dir / value).is_file():
                log.info("nav: %s is not written yet; left out of the nav", value)
                continue
        out.append({title: value} if title is not None else value)
    return out


def _nav_files(items: list[Any]) -> set[str]:
    found: set[str] = set()
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            found |= _nav_files(value)
        elif isinstance(value, str):
            found.add(value)
    return found


def _section(items: list[Any], title: str) -> list[Any] | None:
    for item in items:
        if isinstance(item, dict) and title in item and isinstance(item[title], list):
            return item[title]
    return None


def _title(path: pathlib.Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("_", " ")


def on_config(config: Any) -> Any:
    global _summaries
    _summaries = None  # `mkdocs serve` rebuilds: read the docstrings again
    docs_dir = pathlib.Path(config["docs_dir"])
    nav = config.get("nav")
    if not nav:
        return config
    nav = _prune(nav, docs_dir)
    listed = _nav_files(nav)
    # Pages nobody has put in the nav yet go to the section of their folder (Guides for
    # top-level pages), so a new page is never orphaned and never fails the strict build.
    sections = {"experiments": "Experiments", "api": "API reference", "": "Guides"}
    for page in sorted(docs_dir.rglob("*.md")):
        rel = page.relative_to(docs_dir).as_posix()
        folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if rel in listed or folder not in sections:
            continue
        entries = _section(nav, sections[folder])
        if entries is not None:
            log.info("nav: %s is not in mkdocs.yml's nav; listed under %s", rel, sections[folder])
            entries.append({_title(page): rel})
    config["nav"] = nav
    return config


# ----------------------------------------------------------------------------------- markers


def _guide_links(docs_dir: pathlib.Path, page_src: str) -> str:
    base = pathlib.PurePosixPath(page_src).parent
    lines = []
    for rel, title, blurb in GUIDES:
        if (docs_dir / rel).is_file() and rel != page_src:
            link = pathlib.PurePosixPath(*[".."] * len(base.parts), rel).as_posix()
            lines.append(f"- [{title}]({link}): {blurb}.")
    known = {rel for rel, _, _ in GUIDES} | {"index.md", page_src}
    for page in sorted(docs_dir.glob("*.md")):  # top-level pages not in GUIDES yet
        if page.name not in known:
            link = pathlib.PurePosixPath(*[".."] * len(base.parts), page.name).as_posix()
            lines.append(f"- [{_title(page)}]({link})")
    return "\n".join(lines)


def _experiment_pages(docs_dir: pathlib.Path) -> str:
    lines = []
    for page in sorted((docs_dir / "experiments").glob("*.md")):
        if page.name == "index.md":
            continue
        first = ""
        text = page.read_text(encoding="utf-8")
        for para in re.split(r"\n\s*\n", text):
            para = para.strip()
            if para and not para.startswith(("#", "<!--", "!!!", "```", "|", "![")):
                first = " ".join(para.split())
                break
        first = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0] if first else ""
        lines.append(f"- [{_title(page)}]({page.name})" + (f": {first}" if first else ""))
    return "\n".join(lines) or "*No study pages yet.*"


def _demote(md: str, levels: int) -> str:
    out, fence = [], False
    for line in md.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and re.match(r"^#{1,5} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def _benchmark_tables(docs_dir: pathlib.Path) -> str:
    run_all = _load_run_all()
    results = docs_dir / "benchmarks"
    scripts = run_all.discover()
    names = list(scripts)
    # Tables whose script is gone (or renamed) are still shown, marked as such.
    names += sorted(
        p.stem for p in results.glob("*.md") if p.stem not in scripts and p.stem != "run_all"
    )
    labels = sorted(p.name for p in results.iterdir() if p.is_dir()) if results.is_dir() else []
    parts = []
    summary = results / "run_all.md"
    if summary.is_file():
        parts += ["## Last run", "", _demote(summary.read_text(encoding="utf-8").strip(), 1), ""]
    for name in names:
        script = scripts.get(name)
        title = script.title if script else "(no script in benchmarks/ any more)"
        parts += [f"## {name}", "", f"*{title}* — `benchmarks/{name}.py`", ""]
        table = results / f"{name}.md"
        if table.is_file():
            parts += [_demote(table.read_text(encoding="utf-8").strip(), 2), ""]
            if (results / f"{name}.json").is_file():
                parts += [f"Raw numbers: [{name}.json](benchmarks/{name}.json).", ""]
        else:
            parts += [
                '!!! note "Not yet run"',
                f"    No results in `docs/benchmarks/{name}.md` yet: "
                f"`python benchmarks/run_all.py --only {name}` writes them.",
                "",
            ]
        for label in labels:
            other = results / label / f"{name}.md"
            if other.is_file():
                parts += [f"### On {label}", ""]
                parts += [_demote(other.read_text(encoding="utf-8").strip(), 3), ""]
                if (results / label / f"{name}.json").is_file():
                    parts += [
                        f"Raw numbers: [{label}/{name}.json](benchmarks/{label}/{name}.json).",
                        "",
                    ]
    if not names:
        parts.append("*No benchmark scripts in `benchmarks/` yet.*")
    return "\n".join(parts)


_summaries: dict[str, str] | None = None


def _api_summaries() -> dict[str, str]:
    """``{"jinit.NAME": first line of its docstring}``, read statically with griffe."""
    global _summaries
    if _summaries is None:
        import griffe

        pkg = griffe.load(
            "jinit",
            search_paths=[str(REPO)],
            resolve_aliases=True,
            extensions=griffe.load_extensions(RSTToMarkdown),
        )
        public = frozenset(n for n, _ in api_pages.public_imports())
        _summaries = {}
        for name in public:
            try:
                obj = pkg[name]
                doc = obj.docstring.value if obj.docstring else ""
            except Exception:  # an alias griffe cannot resolve: no summary, not an error
                doc = ""
            first = doc.strip().split("\n\n")[0].replace("\n", " ") if doc else ""
            first = first.replace("|", "\\|")
            _summaries[f"jinit.{name}"] = first or "*(no docstring)*"
    return _summaries


def _api_summary(markdown: str) -> str:
    ids = re.findall(r"^::: (jinit\.[\w.]+)\s*$", markdown, flags=re.M)
    summaries = _api_summaries()
    rows = ["| name | summary |", "|---|---|"]
    rows += [f"| [`{i}`][{i}] | {summaries.get(i, '')} |" for i in ids]
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs_dir = pathlib.Path(config["docs_dir"])
    src = page.file.src_uri
    if "<!-- guide-links -->" in markdown:
        markdown = markdown.replace("<!-- guide-links -->", _guide_links(docs_dir, src))
    if "<!-- experiment-pages -->" in markdown:
        markdown = markdown.replace("<!-- experiment-pages -->", _experiment_pages(docs_dir))
    if "<!-- benchmark-tables -->" in markdown:
        markdown = markdown.replace("<!-- benchmark-tables -->", _benchmark_tables(docs_dir))
    if "<!-- api-summary" in markdown:
        markdown = re.sub(r"<!-- api-summary.*?-->", lambda _: _api_summary(markdown), markdown)
    return markdown
