"""Exercise instructions: Markdown to HTML that is safe to put in the page.

Markdown passes raw HTML through, so its output is only trusted after nh3
(ammonia) has cleaned it against an explicit allow-list: text structure,
tables, code, and links (http, https, mailto or relative, opened with
rel="noopener noreferrer"). No scripts, styles, event handlers, forms, frames
or images (an image would let an exercise track who reads it).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown.extensions.tables import TableExtension

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6",
    "strong", "em", "b", "i", "del", "sub", "sup", "kbd", "code", "pre", "blockquote",
    "ul", "ol", "li", "dl", "dt", "dd",
    "table", "thead", "tbody", "tr", "th", "td",
    "a",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "th": {"align"},
    "td": {"align"},
    "ol": {"start"},
    "code": {"class"},  # a fence's language-<name>, filtered below
}
URL_SCHEMES = {"http", "https", "mailto"}
CACHE_SIZE = 256

_cache: OrderedDict[str, str] = OrderedDict()
_cache_lock = threading.Lock()


def render_markdown(md: str) -> SafeString:
    """Sanitised HTML for these instructions; cached by content hash, since
    the same few READMEs are rendered on every exercise page."""
    key = hashlib.sha256(md.encode("utf-8", "surrogatepass")).hexdigest()
    with _cache_lock:
        html = _cache.get(key)
        if html is not None:
            _cache.move_to_end(key)
            return mark_safe(html)  # noqa: S308 - sanitised below before caching
    html = _sanitise(_to_html(md))
    with _cache_lock:
        _cache[key] = html
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return mark_safe(html)  # noqa: S308 - nh3 output, allow-list above


def _to_html(md: str) -> str:
    # SuperFences, not fenced_code: Python-Markdown's own fences only work at
    # the top level, so a command block indented under a numbered step came
    # out as one run-on paragraph and restarted the list. Highlighting stays
    # off (no Pygments spans for the sanitiser to strip): the class
    # language-<name> is all the page gets.
    return markdown.markdown(
        md,
        extensions=[
            "pymdownx.superfences",
            "pymdownx.highlight",
            TableExtension(use_align_attribute=True),
            "sane_lists",
        ],
        extension_configs={"pymdownx.highlight": {"use_pygments": False}},
        output_format="html",
    )


def _sanitise(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_filter_attribute,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "code" and attribute == "class":
        kept = [c for c in value.split() if c.startswith("language-") and c[9:].isalnum()]
        return " ".join(kept) or None
    return value
