"""The input check of a growing conversation, as a gateway sees it: every
turn resends the whole history (balanced profile, one tenant, so the model
caches answer for the turns already seen). Prints ms per check by the
number of messages, with and without the learned injection layer.

    OMP_NUM_THREADS=1 python bench/guard_conversation.py [--turns 10 20 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from mantlet.pipeline.shield import Shield
from mantlet.policy.loader import load_policy_text

PARAGRAPH = (
    "We reviewed the quarterly plan and agreed to move the launch by two weeks, so the"
    " support team has time to update the help centre and train the new hires. "
) * 8
NO_MODEL = """
version: 1
extends: balanced
detectors:
  injection:
    options: {use_model: false}
"""


def conversation(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are helpful."}]
    for turn in range(turns):
        role = "user" if turn % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"{PARAGRAPH} (turn {turn})"})
    return messages


def timed(shield: Shield, messages: list[dict[str, Any]], rounds: int) -> float:
    shield.check_input(messages, tenant="bench")  # the history is known: caches warm
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        shield.check_input(messages, tenant="bench")
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    shields = {
        "balanced": Shield.from_policy("balanced"),
        "balanced, no model": Shield(load_policy_text(NO_MODEL)),
    }
    rows = {
        str(turns): {
            name: timed(s, conversation(turns), args.rounds) for name, s in shields.items()
        }
        for turns in args.turns
    }
    for shield in shields.values():
        shield.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'messages':>8} " + " ".join(f"{name:>20}" for name in shields))
    for turns, row in rows.items():
        chars = sum(len(m["content"]) for m in conversation(int(turns)))
        cells = " ".join(f"{row[name]:17.2f} ms" for name in shields)
        print(f"{int(turns) + 1:8d} {cells}   ({chars:,} characters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
