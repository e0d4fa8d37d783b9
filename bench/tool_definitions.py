"""Cost of guarding tool declarations: the input check of one short user
message plus N declared tools (balanced profile), the first time a tenant
sends them (the injection model embeds every description) and again (its
per-tenant window cache answers, as for an agent that resends the same tools
on every turn).

    OMP_NUM_THREADS=1 python bench/tool_definitions.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from mantlet.pipeline.shield import Shield

# Our own descriptions, in the style of agent tool catalogues.
DESCRIPTIONS = [
    "Get the current weather in a given location.",
    "Search the web for up-to-date information about recent events.",
    "Send an email to a recipient after the user confirmed recipient and subject.",
    "Run a read-only SQL query against the analytics warehouse; at most 100 rows.",
    "Create a calendar event; times in ISO 8601 with a timezone.",
    "Read a text file from the workspace.",
    "Look up a product by SKU and return its price and stock level.",
    "Translate text into the target language, keeping formatting.",
    "List files matching a glob pattern, case-insensitively.",
    "Fetch the contents of a URL as markdown, following at most five redirects.",
    "Summarize a long document into a few paragraphs.",
    "Book a meeting room, or return the closest free time.",
    "Return the status of a service from the monitoring dashboard.",
    "Query the knowledge base and return article ids with snippets.",
    "Update a support ticket's status to open, pending, solved or closed.",
    "Hand the conversation over to a human agent.",
]


def tool(index: int) -> dict[str, Any]:
    description = DESCRIPTIONS[index % len(DESCRIPTIONS)]
    if index >= len(DESCRIPTIONS):
        description += f" Variant {index}."
    parameters = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for."},
            "limit": {"type": "integer", "description": "How many results, at most 50."},
        },
        "required": ["query"],
    }
    return {
        "type": "function",
        "function": {"name": f"tool_{index}", "description": description, "parameters": parameters},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 1, 8, 32])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    shield = Shield.from_policy("balanced")
    messages = [{"role": "user", "content": "Which of my orders shipped last week?"}]
    shield.check_input(messages, tenant="warm-up")
    rows = {}
    tenant = 0
    for count in args.counts:
        fields = {"tools": [tool(i) for i in range(count)]} if count else None
        first, again = [], []
        for _ in range(args.rounds):
            tenant += 1
            for timings in (first, again):
                started = time.perf_counter()
                shield.check_input(messages, fields=fields, tenant=f"t{tenant}")
                timings.append((time.perf_counter() - started) * 1000)
        rows[count] = {"first_ms": statistics.median(first), "again_ms": statistics.median(again)}
    shield.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'tools':>5} {'first ms':>9} {'again ms':>9}")
    for count, row in rows.items():
        print(f"{count:5d} {row['first_ms']:9.1f} {row['again_ms']:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
