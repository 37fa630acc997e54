"""Model-generated text is untrusted: markdown is rendered with raw HTML disabled, then sanitized."""

from __future__ import annotations

from functools import lru_cache

import nh3
from django import template
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_TAGS = {"p", "br", "pre", "code", "em", "strong", "ul", "ol", "li", "blockquote", "h1", "h2", "h3", "h4",
         "h5", "h6", "hr", "a", "table", "thead", "tbody", "tr", "th", "td", "del"}


@lru_cache(maxsize=1)
def _parser():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


def markdown_to_safe_html(text: str) -> SafeString:
    html = _parser().render(text or "")
    clean = nh3.clean(html, tags=_TAGS, attributes={"a": {"href", "title"}, "code": {"class"}},
                      url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow")
    return mark_safe(clean)  # noqa: S308 (sanitized by nh3 just above)


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    return markdown_to_safe_html(text)
