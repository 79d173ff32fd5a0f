"""Griffe extension: the reStructuredText bits of jinit's Google-style docstrings, as Markdown.

jinit's docstrings are Google style (sections ``Args:``, ``Returns:`` ...) with a few RST
constructs, because that is what JAX/optax/Flax docstrings use and what ``help()`` shows well:

* ``:math:`x```            -> ``\\(x\\)`` (inline math, rendered by MathJax via arithmatex)
* ``.. math:: x`` blocks   -> ``$$ x $$`` display math
* ``Text::`` + indented    -> ``Text:`` + a fenced code block (python if it parses, else text)
* ``:func:`name```, ``:class:``, ``:meth:``, ``:attr:``, ``:data:``, ``:mod:``, ``:obj:``
                           -> a link to the API entry when ``name`` is a public name of jinit
                              (``jinit.x``, ``x``, or ``x.member``), otherwise inline code.

``rst_to_markdown`` is a pure function (tested in tests/test_docs.py); the extension applies it
to every docstring griffe loads. Registered in mkdocs.yml under the python handler's options.
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import griffe

sys.path.insert(0, str(Path(__file__).resolve().parent))
import api_pages  # noqa: E402

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:py:)?(func|class|meth|attr|data|mod|obj|exc|const):`~?([^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(?P<ind>\s*)\.\.\s+math::\s*(?P<rest>.*)$")
_LITERAL_INTRO = re.compile(r"^(?P<ind>\s*)(?P<text>.*?)\s*::\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block(lines: list[str], start: int, ind: int) -> int:
    """Index one past the block of lines indented deeper than ``ind`` starting at ``start``."""
    end = start
    i = start
    while i < len(lines):
        if lines[i].strip() and _indent(lines[i]) <= ind:
            break
        i += 1
        if lines[i - 1].strip():
            end = i
    return end


def _is_python(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def _blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    fence = False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fence = not fence
        if fence:
            out.append(line)
            i += 1
            continue
        m = _MATH_DIRECTIVE.match(line)
        if m:
            ind = len(m["ind"])
            end = _block(lines, i + 1, ind)
            body = [m["rest"]] if m["rest"].strip() else []
            body += textwrap.dedent("\n".join(lines[i + 1 : end])).split("\n")
            body = [b.rstrip() for b in body if b.strip()]
            pad = " " * ind
            if out and out[-1].strip():
                out.append("")
            out += [pad + "$$", *(pad + b for b in body), pad + "$$", ""]
            i = end
            while i < len(lines) and not lines[i].strip():
                i += 1
            continue
        m = _LITERAL_INTRO.match(line)
        if m and not line.lstrip().startswith(".."):
            ind = len(m["ind"])
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            end = _block(lines, j, ind)
            if j > i + 1 and end > j:  # a blank line, then an indented block: a literal block
                if m["text"]:
                    out.append(f"{m['ind']}{m['text']}:")
                code = textwrap.dedent("\n".join(lines[j:end]))
                pad = " " * ind
                lang = "python" if _is_python(code) else "text"
                out += ["", f"{pad}```{lang}", *(pad + c if c else c for c in code.split("\n"))]
                out += [f"{pad}```", ""]
                i = end
                while i < len(lines) and not lines[i].strip():
                    i += 1
                continue
        out.append(line)
        i += 1
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


def _resolve(target: str, public: frozenset[str], local: dict[str, str]) -> str | None:
    """The API identifier a role's target links to, or None (then it is shown as code)."""
    parts = target.removesuffix("()").split(".")
    if parts[0] == "jinit":
        parts = parts[1:]
    if not parts:
        return None
    if parts[0] in public:
        if parts[0] in local.values() and len(parts) > 1:  # jinit.theory.q_map
            return "jinit." + ".".join(parts[:2])
        return f"jinit.{parts[0]}"
    return local.get(parts[0])


def _inline(text: str, public: frozenset[str], local: dict[str, str]) -> str:
    def xref(m: re.Match[str]) -> str:
        shown = m[2].strip().removesuffix("()")
        ident = _resolve(shown, public, local)
        return f"[`{shown}`][{ident}]" if ident else f"`{shown}`"

    # Inline roles, outside fenced code blocks only.
    pieces = re.split(r"(^\s*```.*?^\s*```[^\n]*$)", text, flags=re.S | re.M)
    for k in range(0, len(pieces), 2):
        s = _MATH_ROLE.sub(lambda m: r"\(" + m[1] + r"\)", pieces[k])
        pieces[k] = _XREF_ROLE.sub(xref, s)
    return "".join(pieces)


def rst_to_markdown(
    text: str, public: frozenset[str] | set[str] = frozenset(), local: dict[str, str] | None = None
) -> str:
    """Converts the RST constructs of a docstring to Markdown (see the module docstring).

    Args:
      text: the docstring.
      public: the public names of jinit (a role naming one links to its API entry).
      local: ``{bare name: API identifier}`` for names of a public module the docstring's
        object lives in (``{"q_map": "jinit.theory.q_map"}``).
    """
    return _inline(_blocks(text), frozenset(public), local or {})


def attribute_doc(obj: griffe.Object, public: frozenset[str]) -> str:
    """A docstring for an attribute that has none: its ``#:`` comment, or "Alias of ..."."""
    lines = obj.module.lines if obj.lineno else []
    comment: list[str] = []
    k = (obj.lineno or 1) - 2
    while 0 <= k < len(lines) and lines[k].lstrip().startswith("#:"):
        comment.insert(0, lines[k].lstrip()[2:].strip())
        k -= 1
    if comment:
        return "\n".join(comment)
    value = str(obj.value) if obj.value is not None else ""
    if value in public:
        target = obj.parent.members.get(value) if obj.parent is not None else None
        if target is not None and (target.is_function or target.is_class):
            return (
                f"Alias of [`{value}`][jinit.{value}]: the same object (same arguments, "
                "defaults and numbers)."
            )
    return ""


class RSTToMarkdown(griffe.Extension):
    """Rewrites every docstring of the loaded ``jinit`` package with `rst_to_markdown`."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "jinit":
            return
        imports = api_pages.public_imports()
        public = frozenset(name for name, _ in imports)
        # Public modules (``from jinit._src import theory as theory``): their public members.
        modules = {mod: name for name, mod in imports if name == mod}
        src = pkg.members.get("_src")
        for mod_name, public_name in modules.items():
            module = src.members.get(mod_name) if src is not None else None
            if module is None:
                continue
            local = {
                n: f"jinit.{public_name}.{n}"
                for n, m in module.members.items()
                if not n.startswith("_") and not m.is_alias
            }
            self._convert(module, public, local)
        self._convert(pkg, public, {})

    def _convert(self, obj: griffe.Object, public: frozenset[str], local: dict[str, str]) -> None:
        if obj.is_attribute and (obj.docstring is None or not obj.docstring.value):
            text = attribute_doc(obj, public)
            if text:
                obj.docstring = griffe.Docstring(text, parent=obj)
        if obj.docstring is not None and obj.docstring.value and not obj.extra["jinit"].get("md"):
            obj.docstring.value = rst_to_markdown(obj.docstring.value, public, local)
            obj.extra["jinit"]["md"] = True
        for member in obj.members.values():
            if not member.is_alias:
                self._convert(member, public, local)
