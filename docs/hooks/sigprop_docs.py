"""MkDocs hooks of sigprop's documentation site (mkdocs.yml: ``hooks``).

1. ``::: sigprop.NAME`` in a page, for a public name of ``sigprop.api.PUBLIC``, becomes
   ``::: <defining module>.NAME``: the pages name what a user types, and the API reference
   follows the names when they move between modules.
2. Every public name must appear in the API reference (a ``::: sigprop.NAME`` line, or a
   ``::: <module>`` line of its defining module): a missing one is a warning, so
   ``mkdocs build --strict`` fails on it.
3. The tutorial notebook links to pages as ``theory.md`` (what Jupyter and GitHub open); on the
   site those links are rewritten to the pages' URLs, and a link to no page is a warning.
"""

from __future__ import annotations

import logging
import re

from mkdocs.utils import get_relative_url

from sigprop.api import PUBLIC

log = logging.getLogger("mkdocs.hooks.sigprop_docs")

DIRECTIVE = re.compile(r"^(?P<indent>\s*):::\s+(?P<identifier>[\w.]+)\s*$", re.MULTILINE)
NOTEBOOK_LINK = re.compile(r'href="(?P<target>[\w./-]+\.md)(?P<anchor>#[^"]*)?"')

_documented: set[str] = set()


def on_pre_build(config):
    _documented.clear()


def on_page_markdown(markdown, page, config, files):
    def resolve(match: re.Match) -> str:
        identifier = match["identifier"]
        name = identifier.removeprefix("sigprop.")
        if identifier.startswith("sigprop.") and name in PUBLIC:
            _documented.add(name)
            return f"{match['indent']}::: {PUBLIC[name]}.{name}"
        _documented.update(n for n, module in PUBLIC.items() if module == identifier)
        return match.group(0)

    return DIRECTIVE.sub(resolve, markdown)


def on_post_page(output, page, config):
    if not page.file.src_uri.endswith(".ipynb"):
        return output

    def relink(match: re.Match) -> str:
        target = match["target"]
        found = _page_files.get(target)
        if found is None:
            log.warning("%s links to %s, which is not a page of the site", page.file.src_uri,
                        target)
            return match.group(0)
        return f'href="{get_relative_url(found, page.url)}{match["anchor"] or ""}"'

    return NOTEBOOK_LINK.sub(relink, output)


_page_files: dict[str, str] = {}


def on_files(files, config):
    _page_files.clear()
    _page_files.update({f.src_uri: f.url for f in files.documentation_pages()})
    return files


def on_post_build(config):
    missing = sorted(set(PUBLIC) - _documented)
    if missing:
        log.warning("public names missing from the API reference (add a '::: sigprop.NAME' "
                    "line to a page under docs/api/): %s", ", ".join(missing))
