"""Model answers as HTML: Markdown rendered, then sanitised, so nothing a model writes runs in the page.

markdown-it-py renders with raw HTML off (a model's <script> comes out as text); nh3 then keeps only the
tags Markdown produces. Images are dropped: a prompt-injected answer could otherwise make the browser
fetch an attacker's URL with data in it, just by being shown.
"""

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}
ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "ol": {"start"}}


@lru_cache(maxsize=1)
def _renderer() -> MarkdownIt:
    # breaks: a single newline is a line break, as the text looked while it streamed.
    return MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])


def _keep_language_class(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "class":
        return value if tag == "code" and value.startswith("language-") and " " not in value else None
    return value


def render(text: str) -> str:
    html = _renderer().render(text)
    return nh3.clean(
        html, tags=TAGS, attributes=ATTRIBUTES, attribute_filter=_keep_language_class,
        url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow",
    )
