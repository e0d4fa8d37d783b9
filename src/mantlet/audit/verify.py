"""Full verification of an audit log: every record re-hashed, every stored
tree node and the head recomputed, every signed checkpoint checked.

Finds edits, deletions, insertions, reordering and truncation and names the
first bad record. Against someone who rewrote records *and* every tree node
consistently, only the signed checkpoints still hold: the report then names
the range between the last checkpoint that matched and the first that did not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mantlet.audit import merkle
from mantlet.audit.checkpoint import Checkpoint, CheckpointError, NoteVerifier
from mantlet.audit.store import AuditLog
from mantlet.core.canonical import canonical_json

__all__ = ["Problem", "VerifyReport", "verify_log"]

_BATCH = 5000
_MAX_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int | None
    reason: str
    # "record": this record itself is wrong; "tree": a node, the head or a
    # checkpoint disagrees (often a consequence of a bad record).
    kind: str = "record"

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "reason": self.reason, "kind": self.kind}


@dataclass
class VerifyReport:
    records: int = 0
    head_size: int = 0
    root: str = ""
    checkpoints_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> Problem | None:
        records = [p for p in self.problems if p.kind == "record" and p.seq is not None]
        if records:
            return min(records, key=lambda p: p.seq or 0)
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        first = self.first_bad
        return {
            "ok": self.ok,
            "records": self.records,
            "head_size": self.head_size,
            "root": self.root,
            "checkpoints_checked": self.checkpoints_checked,
            "first_bad": first.to_dict() if first else None,
            "problems": [p.to_dict() for p in self.problems],
        }


def verify_log(
    log: AuditLog, verifier: NoteVerifier, *, witnessed: list[str] | None = None
) -> VerifyReport:
    """``witnessed``: signed checkpoint notes kept elsewhere (the strongest
    check: a truncated or rewritten database cannot match them)."""
    report = VerifyReport()
    head = log.head()
    report.head_size = head.size

    def problem(seq: int | None, reason: str, kind: str = "tree") -> None:
        if len(report.problems) < _MAX_PROBLEMS:
            report.problems.append(Problem(seq, reason, kind))

    expected_roots: dict[int, list[tuple[str, bytes]]] = {}
    for size, root, note in log.checkpoints():
        _add_checkpoint(expected_roots, note, verifier, "stored", log.origin, problem)
        if expected_roots.get(size) and expected_roots[size][-1][1] != root:
            problem(None, f"stored checkpoint row at size {size} disagrees with its signed note")
    for note in witnessed or []:
        _add_checkpoint(expected_roots, note, verifier, "witnessed", log.origin, problem)
    report.checkpoints_checked = sum(len(v) for v in expected_roots.values())

    frontier = merkle.Frontier()
    prev = merkle.EMPTY_ROOT
    last_good_checkpoint = 0
    expected = 0
    pending: list[tuple[int, int, bytes]] = []
    for record in log.records(batch=_BATCH):
        if record.seq != expected:
            if record.seq > expected:
                missing = f"records {expected}..{record.seq - 1} are missing (deleted)"
                problem(expected, missing, "record")
            else:
                problem(record.seq, "record appears out of order", "record")
            break
        leaf = record.leaf_hash
        reason = _check_body(record.body, record.seq, prev)
        if reason:
            problem(record.seq, reason, "record")
        pending.extend(frontier.append(leaf))
        prev = leaf
        expected += 1
        if len(pending) >= 2 * _BATCH:
            _compare_nodes(log, pending, problem)
            pending.clear()
        for origin, root in expected_roots.get(frontier.size, []):
            if frontier.root() != root:
                problem(
                    last_good_checkpoint,
                    f"records {last_good_checkpoint}..{frontier.size - 1} do not match the "
                    f"{origin} signed checkpoint at size {frontier.size}",
                )
            else:
                last_good_checkpoint = frontier.size
    _compare_nodes(log, pending, problem)
    report.records = expected
    report.root = frontier.root().hex()
    if expected < head.size:
        truncated = f"log truncated: the head says {head.size} records, {expected} remain"
        problem(expected, truncated, "record")
    elif expected > head.size:
        problem(head.size, f"records beyond the head ({head.size}) were inserted", "record")
    elif frontier.root() != head.root:
        problem(None, "the stored head root does not match the recomputed tree")
    beyond = [s for s in expected_roots if s > expected]
    if beyond:
        problem(
            expected,
            f"log truncated: a signed checkpoint covers {max(beyond)} records, "
            f"only {expected} remain",
        )
    return report


def _check_body(body: str, seq: int, prev: bytes) -> str | None:
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return f"record {seq} is not valid JSON (edited)"
    if not isinstance(data, dict):
        return f"record {seq} is not a JSON object (edited)"
    if canonical_json(data).decode("utf-8") != body:
        return f"record {seq} is not in canonical form (edited)"
    if data.get("seq") != seq:
        return f"record {seq} holds the content of record {data.get('seq')} (reordered or moved)"
    if data.get("prev") != prev.hex():
        return f"record {seq} does not follow record {seq - 1} (inserted, reordered or edited)"
    return None


def _compare_nodes(log: AuditLog, created: list[tuple[int, int, bytes]], problem: Any) -> None:
    by_level: dict[int, dict[int, bytes]] = {}
    for level, index, digest in created:
        by_level.setdefault(level, {})[index] = digest
    for level, wanted in sorted(by_level.items()):
        stored = log.stored_nodes(level, min(wanted), max(wanted) + 1)
        for index in sorted(wanted):
            if stored.get(index) != wanted[index]:
                first = index << level
                what = "missing" if index not in stored else "different"
                if level == 0:
                    problem(first, f"record {first} does not match its stored leaf hash", "record")
                else:
                    last = ((index + 1) << level) - 1
                    node = f"stored tree node ({level}, {index}) is {what}"
                    problem(first, f"{node} (records {first}..{last})")
                return


def _add_checkpoint(
    roots: dict[int, list[tuple[str, bytes]]],
    note: str,
    verifier: NoteVerifier,
    origin: str,
    log_origin: str,
    problem: Any,
) -> None:
    try:
        checkpoint = Checkpoint.open(note, verifier)
    except CheckpointError as exc:
        problem(None, f"a {origin} checkpoint does not verify: {exc}")
        return
    if checkpoint.origin != log_origin:
        problem(None, f"a {origin} checkpoint is for another log ({checkpoint.origin!r})")
        return
    if checkpoint.size:
        roots.setdefault(checkpoint.size, []).append((origin, checkpoint.root))
