"""docs/ and the README's reading order stay true to the code.

- Every ```python block of a docs/ page runs (the page's blocks in order, in one namespace), and
  a ```text block right after it is exactly what it prints: the numbers on the pages are the
  code's. ``python tests/test_docs.py --write`` reruns the snippets and rewrites those blocks.
- Every relative link in docs/*.md and README.md points to a file that exists, and a link whose
  text names a function or class (`name`, `Class.method`) points to the file that defines it.
- The README's "Reading the source" links every .py file of autograd/ and minivgg/; it is the one
  source of the reading order: autograd/__init__.py's docstring gives its files in the same
  order, and docs/README.md lists its pages in the order the README first links them.
"""
import contextlib
import io
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")


# -- snippets --------------------------------------------------------------------------------------
def fenced_blocks(text):
    """[(language, body, start, end)] of the fenced blocks of a Markdown text (character offsets
    of the body)."""
    blocks = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, flags=re.M | re.S):
        blocks.append((m.group(1), m.group(2), m.start(2), m.end(2)))
    return blocks


def snippets(text):
    """[(code, expected output or None, (start, end) of the output block or None)].

    The code is preceded by blank lines so that a traceback's line numbers are the page's.
    """
    blocks, found = fenced_blocks(text), []
    for k, (lang, body, start, end) in enumerate(blocks):
        if lang != "python":
            continue
        code = "\n" * text.count("\n", 0, start) + body
        nxt = blocks[k + 1] if k + 1 < len(blocks) else None
        follows = nxt is not None and nxt[0] == "text" and not text[end + 3:nxt[2] - 8].strip()
        found.append((code, nxt[1], nxt[2:]) if follows else (code, None, None))
    return found


def run_snippets(page):
    """[(expected, printed, span)] for each python block of ``page``, run in order."""
    namespace, results = {"__name__": f"docs_{page.stem}"}, []
    for code, expected, span in snippets(page.read_text()):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(page), "exec"), namespace)     # noqa: S102 - our own docs
        results.append((expected, out.getvalue(), span))
    return results


def our_pages():
    return sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("page", our_pages(), ids=lambda p: p.name)
def test_every_printed_number_is_what_the_code_prints(page):
    for expected, printed, _ in run_snippets(page):
        if expected is not None:
            assert printed == expected, (f"{page.name}: a snippet now prints\n{printed}\nbut the "
                                         f"page shows\n{expected}\n(python tests/test_docs.py "
                                         "--write updates the page)")


def test_the_pages_show_outputs():
    """A page of derivations shows at least one number the code produced."""
    for page in our_pages():
        if page.name != "README.md":
            assert any(e is not None for _, e, _ in snippets(page.read_text())), page.name


# -- links -----------------------------------------------------------------------------------------
def links(path):
    """[(text, target)] of the relative links of a Markdown file (web links and anchors skipped)."""
    found = LINK.findall(path.read_text())
    return [(t, u) for t, u in found if not re.match(r"[a-z]+:|#", u)]


def defines(source, name):
    """True when ``source`` defines every part of a dotted name (``Tensor.backward``)."""
    return all(re.search(rf"^\s*(def|class)\s+{re.escape(part)}\b|^{re.escape(part)}\s*=",
                         source, flags=re.M) for part in name.split("."))


def markdown_files():
    return [ROOT / "README.md"] + sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(path):
    for text, url in links(path):
        target = (path.parent / url.split("#")[0]).resolve()
        assert target.exists(), f"{path.name}: [{text}]({url}) points to a missing file"
        name = re.fullmatch(r"`([A-Za-z_][\w.]*)(\(\))?`", text)
        if name and target.suffix == ".py" and not name.group(1).endswith(".py"):
            assert defines(target.read_text(), name.group(1)), \
                f"{path.name}: [{text}]({url}): {url} does not define {name.group(1)}"


def test_every_page_is_linked_from_the_docs_index():
    index = {(DOCS / u).resolve() for _, u in links(DOCS / "README.md")}
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert page.resolve() in index, f"docs/README.md does not link {page.name}"


def test_a_link_checker_that_can_fail(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[`conv2d`](../autograd/conv.py) [x](missing.md) [w](https://a.b) [a](#top)")
    assert links(page) == [("`conv2d`", "../autograd/conv.py"), ("x", "missing.md")]
    assert defines((ROOT / "autograd" / "conv.py").read_text(), "Conv2d.backward")
    assert not defines((ROOT / "autograd" / "conv.py").read_text(), "Conv2d.no_such_method")


def test_a_snippet_checker_that_can_fail():
    text = "```python\nprint(1 + 1)\n```\n\n```text\n3\n```\n```python\nx = 1\n```\n"
    (code, expected, _), (code2, none, _) = snippets(text)
    assert (code, expected, none) == ("\nprint(1 + 1)\n", "3\n", None)
    assert code2 == "\n" * 8 + "x = 1\n"           # on line 9 of the page, as in a traceback


# -- the reading order -----------------------------------------------------------------------------
def reading_section():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Reading the source\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert m, "README.md has no '## Reading the source' section followed by another section"
    return m.group(1)


def test_the_reading_order_covers_every_source_file():
    listed = [(ROOT / u).resolve() for _, u in LINK.findall(reading_section())]
    for folder in ("autograd", "minivgg"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            assert path.resolve() in listed, \
                f"README's 'Reading the source' does not list {path.relative_to(ROOT)}"


def test_every_source_file_opens_with_a_docstring():
    import ast
    for folder in ("autograd", "minivgg"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            doc = ast.get_docstring(ast.parse(path.read_text()))
            assert doc and len(doc) >= 40, f"{path.relative_to(ROOT)} opens with no docstring"


def test_the_engine_docstring_gives_the_same_order():
    import miniautograd
    readme = [u.removeprefix("autograd/") for _, u in LINK.findall(reading_section())
              if u.startswith("autograd/")]
    docstring = re.findall(r"^\s+\d+\.\s+(\S+\.py)", miniautograd.__doc__, flags=re.M)
    assert docstring == [f for f in readme if f in docstring] and len(docstring) >= 9, \
        f"autograd/__init__.py lists {docstring}; README's order is {readme}"


def test_the_docs_index_follows_the_reading_order():
    readme = [Path(u).name for _, u in LINK.findall(reading_section()) if u.startswith("docs/")
              and u != "docs/README.md"]
    first_seen = list(dict.fromkeys(readme))
    index = [u for _, u in links(DOCS / "README.md") if u.endswith(".md")
             and not u.startswith("..")]
    assert index == first_seen, f"docs/README.md lists {index}; README's order is {first_seen}"


def write_outputs():
    """Rerun every page's snippets and write what they print into the ```text blocks after them."""
    for page in our_pages():
        text = page.read_text()
        for expected, printed, span in reversed(run_snippets(page)):
            if span is not None:
                text = text[:span[0]] + printed + text[span[1]:]
        page.write_text(text)
        print(f"wrote {page.relative_to(ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_docs.py --write")
    write_outputs()
