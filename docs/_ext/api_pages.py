"""The API reference pages (docs/api/*.md), generated from jinit/__init__.py.

Every public name of ``jinit`` gets one ``::: jinit.NAME`` entry on the page of the topic its
source module belongs to (``from jinit._src.MODULE import NAME as NAME`` in ``jinit/__init__.py``).
A name from a module not in ``TOPICS`` lands on the "Other" page, so nothing is ever left out;
``tests/test_docs.py`` fails if a public name is missing from the pages.

    python docs/_ext/api_pages.py            # rewrite docs/api/*.md after adding a public name
    python docs/_ext/api_pages.py --check    # exit 1 if the pages are not up to date

Only the standard library is used (the ``jinit/__init__.py`` source is read with ``ast``), so
this runs without jax and is imported by the mkdocs hook and the griffe extension.
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
INIT = REPO / "jinit" / "__init__.py"
API_DIR = REPO / "docs" / "api"

# (page stem, title, source modules under jinit._src, introduction). Order = nav order.
TOPICS: list[tuple[str, str, tuple[str, ...], str]] = [
    (
        "initializers",
        "Initializers",
        ("initializers", "initializers_structured", "fixup"),
        "Factories returning `init(key, shape, dtype=None, out_sharding=None) -> Array`, usable "
        "anywhere Flax takes a `kernel_init=` / `bias_init=`. Each docstring gives the formula "
        "(which fan, variance or standard deviation, before or after truncation) and the paper.",
    ),
    (
        "fans_gains",
        "Fans and gains",
        ("fans", "gains"),
        "The two numbers every variance-scaling rule is made of: the fans of a weight shape "
        "(with explicit axes, for any layout) and the gain of an activation.",
    ),
    (
        "presets",
        "Framework presets",
        ("presets",),
        "The default initializations of PyTorch, Keras, Haiku and Flax, reproduced exactly, so "
        "a model ported from another framework can start from the same distribution.",
    ),
    (
        "reinit",
        "Re-initialization by path",
        ("reinit", "paths"),
        "Re-draw selected leaves of an existing params tree, with one key per parameter derived "
        "from its path, so adding a layer never changes another layer's values.",
    ),
    (
        "lsuv",
        "LSUV and data-dependent init",
        ("datadep", "checks"),
        "Layer-sequential unit-variance initialization and the per-unit data-dependent methods, "
        "one pass over a Flax (linen or NNX) model or a plain function on a batch of data, "
        "through the one capture layer, with verified solves and measured reports.",
    ),
    (
        "dynamic",
        "Dynamically scaled init",
        ("dynamic",),
        "GradInit and MetaInit: passes that learn one scale per parameter block by "
        "optimization, each one jitted program that only rescales, with a vmappable report.",
    ),
    (
        "training",
        "Training and seed sweeps",
        ("training",),
        "optax training loops compiled once, and seed sweeps that `vmap` whole trainings over "
        "a leading model axis.",
    ),
    (
        "diagnostics",
        "Diagnostics",
        ("diagnostics", "isometry", "recommend", "random_mlp"),
        "Pure, jittable functions returning flat dicts of numbers about a network at "
        "initialization: per-layer statistics, Jacobian spectra, findings and recommendations.",
    ),
    (
        "scaling",
        "Scaling width and depth",
        ("scaling",),
        "muP and the standard parametrization of an existing params tree (per-leaf init "
        "variances and learning rates relative to a base width), transformer init presets "
        "applied by path, and the coordinate check.",
    ),
    (
        "theory",
        "Theory",
        ("theory",),
        "Mean-field signal propagation: the deterministic variance and correlation maps, "
        "their fixed points and depth scales.",
    ),
]
OTHER = ("other", "Other", (), "Public names whose source module has no topic page yet.")


def public_imports(init_path: pathlib.Path = INIT) -> list[tuple[str, str]]:
    """``(public name, source module under jinit._src)`` in the order of ``jinit/__init__.py``.

    Reads ``from jinit._src.M import X as X`` and ``from jinit._src import M as M`` statements;
    names starting with an underscore are skipped.
    """
    tree = ast.parse(init_path.read_text())
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if not node.module.startswith("jinit._src"):
            continue
        for alias in node.names:
            name = alias.asname or alias.name
            if name.startswith("_") or name in seen:
                continue
            if node.module == "jinit._src":  # a re-exported module: `from jinit._src import m`
                module = alias.name
            else:
                module = node.module.split(".")[2]
            out.append((name, module))
            seen.add(name)
    return out


def page_entries(names: list[tuple[str, str]] | None = None) -> dict[str, list[str]]:
    """``{page stem: [public names]}``, every name on exactly one page."""
    names = public_imports() if names is None else names
    by_module = {m: stem for stem, _, mods, _ in TOPICS for m in mods}
    pages: dict[str, list[str]] = {stem: [] for stem, *_ in TOPICS}
    for name, module in names:
        pages.setdefault(by_module.get(module, OTHER[0]), []).append(name)
    return {k: v for k, v in pages.items() if v}


def render_page(stem: str, names: list[str]) -> str:
    title, intro = next(((t, i) for s, t, _, i in [*TOPICS, OTHER] if s == stem))
    lines = [
        f"# {title}",
        "",
        "<!-- Generated by docs/_ext/api_pages.py from jinit/__init__.py; edit TOPICS there. -->",
        "",
        intro,
        "",
        "<!-- api-summary: the mkdocs hook puts a table of the entries below here -->",
        "",
    ]
    for n in names:
        lines += [f"::: jinit.{n}", ""]
    return "\n".join(lines)


def render_all() -> dict[pathlib.Path, str]:
    pages = page_entries()
    out = {API_DIR / f"{stem}.md": render_page(stem, names) for stem, names in pages.items()}
    index = [
        "# API reference",
        "",
        "<!-- Generated by docs/_ext/api_pages.py from jinit/__init__.py. -->",
        "",
        "Everything below is importable from the top-level package (`import jinit`); the "
        "implementation lives in `jinit._src`. Each entry is rendered from its docstring: the "
        "formula, the arguments (what each scale means), the shapes and dtypes, and the paper.",
        "",
    ]
    for stem, title, *_ in [*TOPICS, OTHER]:
        if stem in pages:
            names = ", ".join(f"`{n}`" for n in pages[stem])
            index.append(f"- [{title}]({stem}.md): {names}")
    index.append("")
    out[API_DIR / "index.md"] = "\n".join(index)
    return out


def nav_pages() -> list[tuple[str, str]]:
    """``(title, path relative to docs/)`` of the API pages, in nav order."""
    pages = page_entries()
    return [(t, f"api/{s}.md") for s, t, *_ in [*TOPICS, OTHER] if s in pages]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/api is out of date")
    args = p.parse_args(argv)
    wanted = render_all()
    stale = sorted(
        str(path.relative_to(REPO))
        for path, text in wanted.items()
        if not path.exists() or path.read_text() != text
    )
    extra = sorted(str(p.relative_to(REPO)) for p in API_DIR.glob("*.md") if p not in wanted)
    if args.check:
        for s in stale + extra:
            print(f"out of date: {s}")
        return 1 if stale or extra else 0
    API_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in wanted.items():
        path.write_text(text)
    for s in extra:
        (REPO / s).unlink()
    print(f"wrote {len(wanted)} pages in {API_DIR.relative_to(REPO)}/ ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
