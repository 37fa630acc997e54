"""Model-generated text is untrusted: markdown is rendered with raw HTML disabled, then sanitized.

What a reader of model answers needs is rendered on the server, so the page runs no script for it:

* fenced code highlighted by Pygments (CSS classes ``tok-*``, styled by ``static/css/code.css``), in the
  language the fence names; an unknown or absent language stays plain (escaped by markdown-it);
* math as MathML (``latex2mathml``): ``$...$``, ``$$...$$``, ``\\(...\\)`` and ``\\[...\\]``. A dollar sign
  opens math only when no space or digit borders it on the inside (``allow_space``/``allow_digits`` off),
  so "costs $5 and $10" stays text.

Whatever the renderers produce goes through nh3 with a fixed list of tags, attributes and classes.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

import nh3
from django import template
from django.utils.safestring import SafeString, mark_safe

from prefdata.stats import p_value_text

register = template.Library()

TOKEN_PREFIX = "tok-"  # Pygments' classes, prefixed so they never meet the app's own

_TAGS = {"p", "br", "pre", "code", "em", "strong", "ul", "ol", "li", "blockquote", "h1", "h2", "h3", "h4",
         "h5", "h6", "hr", "a", "table", "thead", "tbody", "tr", "th", "td", "del", "span"}
# MathML Core, as latex2mathml writes it (no href, no style: nothing that links or needs 'unsafe-inline').
_MATH_TAGS = {"math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msup",
              "msub", "msubsup", "mfrac", "msqrt", "mroot", "mover", "munder", "munderover", "mtable", "mtr",
              "mtd", "mstyle", "mpadded", "mphantom", "menclose", "merror", "mfenced"}
_MATH_ATTRIBUTES = {"display", "xmlns", "mathvariant", "stretchy", "fence", "separator", "lspace", "rspace",
                    "linethickness", "accent", "accentunder", "movablelimits", "columnalign", "columnspacing",
                    "rowspacing", "columnlines", "rowlines", "frame", "width", "height", "depth", "displaystyle",
                    "scriptlevel", "notation", "open", "close", "separators", "minsize", "maxsize", "largeop",
                    "symmetric", "form", "encoding", "mathsize"}
MATH_MAX_CHARS = 2000  # longer "math" is shown as it was written: a converter is no place for a novel
CODE_MAX_CHARS = 200_000  # longer code is shown plain


@lru_cache(maxsize=1)
def _token_classes() -> set[str]:
    from pygments.token import STANDARD_TYPES

    return {TOKEN_PREFIX + name for name in STANDARD_TYPES.values() if name}


def _highlight(code: str, lang: str, _attrs: dict) -> str:
    """Fenced code in the fence's language; "" leaves it to markdown-it (plain, escaped).

    Pygments escapes the code it emits; the result is sanitised with the rest of the answer."""
    name = (lang or "").split()[0].lower() if lang else ""
    if not name or len(code) > CODE_MAX_CHARS:
        return ""
    from pygments import highlight
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(name, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return ""
    return highlight(code, lexer, _formatter())


@lru_cache(maxsize=1)
def _formatter():
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(nowrap=True, classprefix=TOKEN_PREFIX)


# latex2mathml copies the argument of a text command into <mtext> as it is: escaped here, so that
# "\\text{<b>}" shows "<b>" (nh3 would otherwise drop it as a tag).
_TEXT_COMMAND = re.compile(r"(\\(?:text|textrm|textbf|textit|textsf|texttt|textnormal|mbox|hbox)\s*\{)([^{}]*)(\})")


def _math(latex: str, *, display: bool) -> str:
    """LaTeX as MathML; what the converter cannot read stays as it was written (escaped)."""
    latex = latex.strip()
    fallback = f'<code class="math-source">{html.escape(latex)}</code>'
    if not latex or len(latex) > MATH_MAX_CHARS:
        return fallback
    from latex2mathml.converter import convert

    latex = _TEXT_COMMAND.sub(lambda m: m[1] + html.escape(m[2], quote=False) + m[3], latex)
    try:
        mathml = convert(latex, display="block" if display else "inline")
    except Exception:  # noqa: BLE001 (any parse error of untrusted LaTeX: show the source instead)
        return fallback
    return mathml


def _math_inline(self, tokens, idx, options, env) -> str:
    return _math(tokens[idx].content, display=False)


def _math_block(self, tokens, idx, options, env) -> str:
    return _math(tokens[idx].content, display=True) + "\n"


_DISPLAY_IN_TEXT = re.compile(r"\\\[(.+?)\\\]", re.DOTALL)


def _display_math_in_text(state, silent: bool) -> bool:
    """``\\[...\\]`` inside a paragraph ("We have\\n\\[x = 1\\]\\nso"), as models write it: the block rule
    only sees it at the start of a block."""
    if not state.src.startswith("\\[", state.pos):
        return False
    match = _DISPLAY_IN_TEXT.match(state.src, state.pos)
    if match is None or not match[1].strip():
        return False
    if not silent:
        token = state.push("math_display_in_text", "math", 0)
        token.content = match[1]
        token.markup = "\\["
    state.pos = match.end()
    return True


@lru_cache(maxsize=1)
def _parser():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin
    from mdit_py_plugins.texmath import texmath_plugin

    md = (MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
          .enable("table").enable("strikethrough"))
    md.use(dollarmath_plugin, allow_labels=False, allow_space=False, allow_digits=False, double_inline=True)
    md.use(texmath_plugin, delimiters="brackets")
    md.inline.ruler.before("escape", "math_display_in_text", _display_math_in_text)
    md.add_render_rule("math_display_in_text", lambda self, tokens, idx, options, env: _math(
        tokens[idx].content, display=True))
    for rule in ("math_inline", "math_inline_double"):
        md.add_render_rule(rule, _math_inline)
    for rule in ("math_block", "math_block_eqno", "math_block_label"):
        md.add_render_rule(rule, _math_block)
    return md


def markdown_to_safe_html(text: str) -> SafeString:
    html_out = _parser().render(text or "")
    clean = nh3.clean(
        html_out, tags=_TAGS | _MATH_TAGS,
        attributes={"a": {"href", "title"}, "code": {"class"}, **{tag: _MATH_ATTRIBUTES for tag in _MATH_TAGS}},
        allowed_classes={"span": _token_classes()},
        url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow")
    return mark_safe(clean)  # noqa: S308 (sanitized by nh3 just above)


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    return markdown_to_safe_html(text)


@register.filter(name="p_value")
def p_value_filter(value: float | None) -> str:
    """A p-value as people read it: 1.8e-12, never 0.0 (prefdata.stats.p_value_text)."""
    return p_value_text(value)
