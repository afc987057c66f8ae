"""Put the generated tables into the docs: ``python -m bench.doc_tables``.

docs/PERFORMANCE.md and docs/SCALE.md hold blocks between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``; each is replaced by ``bench/results/NAME.md`` as the benchmark wrote
it (``python -m bench.calls --before REF``, ``bench.latency``, ``bench.coldstart``,
``bench.cost``), so the tables in the docs are the runs', never retyped.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bench.common import PROJECT_DIR, RESULTS_DIR

DOCS = (PROJECT_DIR / "docs" / "PERFORMANCE.md", PROJECT_DIR / "docs" / "SCALE.md")
BLOCK = re.compile(r"(<!-- bench:([a-z_]+) -->\n)(.*?)(<!-- /bench:\2 -->)", re.DOTALL)


def fill(text: str, results: Path = RESULTS_DIR) -> str:
    def replace(match: re.Match[str]) -> str:
        source = results / f"{match.group(2)}.md"
        body = source.read_text(encoding="utf-8").strip() + "\n"
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, text)


def main() -> int:
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        filled = fill(text)
        if filled != text:
            doc.write_text(filled, encoding="utf-8")
            print(f"updated {doc.relative_to(PROJECT_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
