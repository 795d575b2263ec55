"""Output of the benchmark scripts: a CSV written whole or not at all, and the same rows as a Markdown table."""

from __future__ import annotations

import csv
import io

from relumilp._io import any_file, atomic_write_text


def save_rows(path, fields: list[str], rows: list[dict]) -> None:
    """Write ``rows`` (dicts keyed by ``fields``) to the CSV file ``path``, whole or not at all."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue(), ours=any_file)


def markdown(fields: list[str], rows: list[dict]) -> str:
    """``rows`` as a Markdown table with the columns ``fields``."""
    lines = ["| " + " | ".join(fields) + " |", "|" + " --- |" * len(fields)]
    lines += ["| " + " | ".join(str(row[k]) for k in fields) + " |" for row in rows]
    return "\n".join(lines)
