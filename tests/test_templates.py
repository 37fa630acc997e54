"""The templates themselves: a Django comment ``{# ... #}`` ends on its own line (one that spans lines is
shown on the page as text); longer comments use ``{% comment %}``."""

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def test_no_template_comment_spans_lines():
    spanning = [f"{path.relative_to(TEMPLATES)}:{number}"
                for path in sorted(TEMPLATES.rglob("*.html"))
                for number, line in enumerate(path.read_text().splitlines(), 1)
                if "{#" in line and "#}" not in line[line.index("{#"):]]
    assert spanning == [], f"comments shown as text: {spanning}"
