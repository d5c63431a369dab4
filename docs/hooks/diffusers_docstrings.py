"""A Griffe extension that renders diffusers-style docstrings in the API reference (mkdocs.yml loads it).

The docstrings follow diffusers' conventions, which mkdocstrings does not know:

- cross-references are written ``[`~PDAEPipeline.encode`]`` (``~``: show only the last name). They become autorefs
  links when the name is a unique object of the package, and inline code otherwise (diffusers' own classes);
- types are prose in Markdown, e.g. ``(`torch.Tensor` of shape `(B, C, H, W)`, *optional*)``. The API reference
  shows a type inside `<code>` without converting Markdown, so its backticks and asterisks are dropped after parsing.

Only the docstrings that Griffe loaded change; the package's code and files are not touched.
"""

from __future__ import annotations

import re
from functools import cached_property, partial
from typing import Any

import griffe

# ``[`~a.b.Name`]``, not followed by `[` or `(` (which would make it an ordinary Markdown link).
CROSS_REFERENCE = re.compile(r"\[`(?P<tilde>~?)(?P<name>[A-Za-z_][\w.]*)`\](?![\[(])")
AUTOREF = re.compile(r"<autoref [^>]*><code>(?P<title>[^<]*)</code></autoref>")


class DiffusersDocstrings(griffe.Extension):
    """Rewrite the cross-references once the whole package is loaded; clean the types when a docstring is parsed."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        objects = list(_walk(pkg))
        by_suffix: dict[str, set[str]] = {}
        for obj in objects:
            parts = obj.path.split(".")
            for start in range(len(parts)):
                by_suffix.setdefault(".".join(parts[start:]), set()).add(obj.path)
        for obj in objects:
            if obj.docstring is not None:
                obj.docstring.value = CROSS_REFERENCE.sub(
                    partial(_link, obj=obj, by_suffix=by_suffix), obj.docstring.value
                )
                obj.docstring.__class__ = _PlainTypesDocstring


class _PlainTypesDocstring(griffe.Docstring):
    """A docstring whose string types (prose, as in diffusers) lose their Markdown once parsed."""

    @cached_property
    def parsed(self) -> list[griffe.DocstringSection]:
        sections = self.parse()
        for section in sections:
            for item in section.value if isinstance(section.value, list) else ():
                if isinstance(getattr(item, "annotation", None), str):
                    item.annotation = _plain_type(item.annotation)
        return sections


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _link(match: re.Match, obj: griffe.Object, by_suffix: dict[str, set[str]]) -> str:
    """An optional autorefs link to the object `match` names, or inline code when it is not in the package."""
    name = match["name"]
    title = name.rsplit(".", 1)[-1] if match["tilde"] else name
    paths = by_suffix.get(name.removeprefix("diffusers_pdae."), set())
    if len(paths) > 1:  # ambiguous: prefer the objects of the docstring's own module
        paths = {path for path in paths if path.startswith(obj.module.path + ".")}
    if len(paths) != 1:
        return f"`{title}`"
    return f'<autoref identifier="{paths.pop()}" optional><code>{title}</code></autoref>'


def _plain_type(text: str) -> str:
    """A prose type without Markdown: links and `` `X` `` -> X, ``*optional*`` -> optional."""
    text = AUTOREF.sub(lambda match: match["title"], text)
    return text.replace("`", "").replace("*optional*", "optional")
