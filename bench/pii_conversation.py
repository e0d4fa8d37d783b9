"""PII with NER on a chat workload: every turn re-sends the conversation so
far, as OpenAI-style clients do, and the gateway scans each message.

Compares the NER backend with its per-text cache (the default) against the
same model without it, on the same conversations in the same run. Messages
are held-out texts (``pii_presidio_synth`` odd templates as user turns,
``pii_wikigold`` odd documents as assistant turns); every conversation is new
to the cache when it starts.

    OMP_NUM_THREADS=1 python bench/pii_conversation.py [--conversations 20] [--turns 12] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from mantlet.core.types import ScanContext
from mantlet.detectors.pii import PiiDetector, PiiOptions
from mantlet.detectors.pii.ner import en_spacy, load_backend
from pii import load  # bench/pii.py, beside this script


def conversations(count: int, turns: int) -> list[list[str]]:
    users = [r["text"] for r in load("pii_presidio_synth") if r["template_id"] % 2 == 1]
    answers = [r["text"] for r in load("pii_wikigold") if r["doc"] % 2 == 1]
    out = []
    for c in range(count):
        messages = []
        for t in range(turns):
            pool = users if t % 2 == 0 else answers
            messages.append(pool[(c * turns + t) % len(pool)])
        out.append(messages)
    return out


def replay(detector: PiiDetector, chats: list[list[str]]) -> list[float]:
    """Milliseconds per turn: the whole history scanned, message by message."""
    context = ScanContext()
    per_turn = []
    for messages in chats:
        for turn in range(1, len(messages) + 1):
            started = time.perf_counter()
            for message in messages[:turn]:
                detector.detect(message, context)
            per_turn.append((time.perf_counter() - started) * 1000)
    return per_turn


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    chats = conversations(args.conversations, args.turns)
    nlp = load_backend("en_spacy")._nlp  # type: ignore[attr-defined]  # the verified model
    results: dict[str, Any] = {}
    for name, cache_texts in (("no cache", 0), ("cache", en_spacy.CACHE_TEXTS)):
        detector = PiiDetector(PiiOptions(ner="en_spacy"))
        detector._ner = en_spacy.SpacyNer(nlp, cache_texts=cache_texts)
        replay(detector, chats[:1])  # warm-up, then a fresh backend
        detector._ner = backend = en_spacy.SpacyNer(nlp, cache_texts=cache_texts)
        per_turn = replay(detector, chats)
        results[name] = {
            "turns": len(per_turn),
            "mean_ms_per_turn": round(statistics.fmean(per_turn), 2),
            "p50_ms_per_turn": round(statistics.median(per_turn), 2),
            "last_turn_mean_ms": round(statistics.fmean(per_turn[args.turns - 1 :: args.turns]), 2),
            "cache_hits": backend.cache_hits,
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{args.conversations} conversations x {args.turns} turns, history re-sent each turn")
    print("| backend | mean ms / turn | p50 ms / turn | last turn ms | cache hits |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(
            f"| {name} | {r['mean_ms_per_turn']} | {r['p50_ms_per_turn']} | "
            f"{r['last_turn_mean_ms']} | {r['cache_hits']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
