"""Page plumbing that needs no server: templates compiled ahead of the first visit, links in hints."""

from __future__ import annotations

from replyflow.web.rendering import environment, linkify, warm_templates


def test_every_page_template_is_compiled_before_anyone_asks_for_it() -> None:
    env = environment()
    assert env.cache is not None
    env.cache.clear()
    count = warm_templates()
    names = [name for name in env.list_templates() if name.endswith(".html")]
    assert count == len(names) > 10
    cached = {key[1] for key in env.cache}  # Jinja keys its cache by (loader, template name)
    assert set(names) <= cached


def test_hints_show_their_help_addresses_as_links_and_nothing_else_as_html() -> None:
    html = linkify("Link it (https://help.instagram.com/570895513091465), then <b>convert</b> again.")
    assert '<a href="https://help.instagram.com/570895513091465" target="_blank" rel="noopener">' in html
    assert "(<a href" in html and "</a>)" in html
    assert "&lt;b&gt;convert&lt;/b&gt;" in html
