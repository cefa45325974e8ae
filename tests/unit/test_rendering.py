"""Exercise instructions are Markdown rendered to HTML that cannot run code
in the student's page, whatever the README contains."""

from __future__ import annotations

import html as html_module
import re
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.utils.safestring import SafeString

from exercises import rendering
from exercises.rendering import render_markdown


def test_markdown_features_the_readmes_use() -> None:
    html = render_markdown(
        "# Goal\n\nSome **bold** and `code`.\n\n"
        "```sh\nmake -C /lib/modules/$(uname -r)/build M=$PWD\n```\n\n"
        "| Check | Points |\n|:--|--:|\n| builds | 20 |\n\n"
        "1. first\n2. second\n\n- a\n- b\n\n> quoted\n\n"
        "[the docs](https://docs.kernel.org/) and [below](#hints)\n"
    )
    assert isinstance(html, SafeString)
    assert "<h1>Goal</h1>" in html
    assert "<strong>bold</strong>" in html
    assert '<pre><code class="language-sh">make -C /lib/modules/$(uname -r)/build' in html
    assert '<th align="left">Check</th>' in html
    assert '<td align="right">20</td>' in html
    assert "<ol>\n<li>first</li>" in html
    assert "<blockquote>" in html
    assert '<a href="https://docs.kernel.org/" rel="noopener noreferrer">the docs</a>' in html
    assert '<a href="#hints" rel="noopener noreferrer">below</a>' in html
    assert 'id="' not in html  # no table of contents anchors


@pytest.mark.parametrize(
    "attack",
    [
        "<script>alert(1)</script>",
        "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
        '<img src="x" onerror="alert(1)">',
        "![tracker](https://evil.example/pixel.png)",
        '<a href="javascript:alert(1)">click</a>',
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
        '<a href="vbscript:msgbox(1)">x</a>',
        '<p onmouseover="alert(1)">hover</p>',
        '<iframe src="https://evil.example"></iframe>',
        "<style>body { display: none }</style>",
        '<div style="background:url(javascript:alert(1))">x</div>',
        '<svg onload="alert(1)"><circle r="1"/></svg>',
        '<form action="https://evil.example"><input name="password"></form>',
        '<object data="x.swf"></object><embed src="x.swf">',
        '<meta http-equiv="refresh" content="0;url=https://evil.example">',
        '<base href="https://evil.example/">',
        "<!--<script>alert(1)</script>-->",
        '<code class="language-sh" onclick="alert(1)">x</code>',
        '```"><script>alert(1)</script>\nx\n```',
        # The same inside a list item, where fences are code blocks too.
        '1. step\n   ```{.sh onclick="alert(1)" style="x" #anchor}\n   ls\n   ```\n2. next',
        "- item\n  ```sh\n  </code></pre><script>alert(1)</script>\n  ```\n",
        '1. step <b onmouseover="alert(1)">bold</b>\n\n   <script>alert(1)</script>\n',
    ],
)
def test_hostile_markup_is_removed(attack: str) -> None:
    html = render_markdown(f"Intro\n\n{attack}\n\nOutro").lower()
    for forbidden in (
        "<script", "javascript:", "vbscript:", "data:text", "onerror", "onload", "onclick",
        "onmouseover", "<img", "<iframe", "<style", "style=", "<svg", "<form", "<input",
        "<object", "<embed", "<meta", "<base",
    ):  # fmt: skip
        assert forbidden not in html, (attack, html)
    assert "intro" in html
    assert "outro" in html


def test_links_only_keep_safe_attributes() -> None:
    html = render_markdown('<a href="https://x.example" target="_blank" rel="opener">x</a>')
    assert html == '<p><a href="https://x.example" rel="noopener noreferrer">x</a></p>'


def test_code_classes_are_limited_to_languages() -> None:
    html = render_markdown('<code class="language-c btn-danger">x</code>')
    assert html == '<p><code class="language-c">x</code></p>'


def test_rendering_is_cached_by_content() -> None:
    text = "# Cached\n\nunique text 7f3a\n"
    with mock.patch.object(rendering, "_to_html", wraps=rendering._to_html) as to_html:
        first = render_markdown(text)
        second = render_markdown(str(text))
        assert to_html.call_count == 1
        render_markdown(text + "changed")
        assert to_html.call_count == 2
    assert first == second


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rendering, "CACHE_SIZE", 3)
    for i in range(10):
        render_markdown(f"text {i}")
    assert len(rendering._cache) == 3


@pytest.mark.parametrize("slug", ["hello-module", "sysctl-tuning", "bpftrace-syscalls"])
def test_the_real_instructions_render_completely(slug: str) -> None:
    readme = (Path(settings.EXERCISES_CATALOGUE_DIR) / slug / "README.md").read_text()
    html = render_markdown(readme)
    assert html.startswith("<h1>")
    assert "<table>" in html
    assert "<h2>What is checked</h2>" in html
    # Nothing the student should read was dropped by the sanitiser.
    text = html_module.unescape(re.sub(r"<[^>]+>", " ", html))
    words = r"[A-Za-z_]\w*"  # list numbers become <ol>
    lost = set(re.findall(words, readme)) - set(re.findall(words, text))
    assert lost <= {"sh"}, lost  # the fenced blocks' language


def steps_of(html: str, heading: str) -> list[str]:
    """The top-level items of the first list after this heading."""
    section = html.split(f"<h2>{heading}</h2>", 1)[1]
    items = re.search(r"<ol>\n(.*?)\n</ol>", section, re.DOTALL)
    assert items, section[:300]
    return re.findall(r"<li>(.*?)</li>", items.group(1), re.DOTALL)


def test_a_fence_inside_a_numbered_step_is_a_code_block_and_numbering_goes_on() -> None:
    readme = (Path(settings.EXERCISES_CATALOGUE_DIR) / "hello-module" / "README.md").read_text()
    steps = steps_of(render_markdown(readme), "Steps")
    assert len(steps) == 5, steps  # one list: step 5 did not restart at 1
    try_it = steps[3]
    assert try_it.startswith("<strong>Try it:</strong>")
    assert '<pre><code class="language-sh">insmod hello.ko          # load it\n' in try_it
    assert "rmmod hello              # unload it\ndmesg | tail" in try_it  # lines kept
    assert "<p><code>sh" not in try_it  # not the old run-on inline code
    assert steps[4].startswith("When you are happy")


def test_a_fence_in_a_bullet_keeps_its_text_escaped() -> None:
    html = render_markdown("- run:\n  ```\n  echo '<b>' && ls\n  ```\n- then\n")
    assert html == (
        "<ul>\n<li>run:\n  <pre><code>echo '&lt;b&gt;' &amp;&amp; ls</code></pre></li>\n"
        "<li>then</li>\n</ul>"
    )
