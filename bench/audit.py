"""Audit-log throughput and proof cost.

Appends per second on SQLite (WAL) and, when a URL is given, PostgreSQL:
one record per transaction (what a lone request pays) and group commits of
10 and 100 records (what the gateway's committer does under load). Then a log
of ``--records`` records (default 10^6) is built on SQLite and inclusion and
consistency proofs are generated (from the node table) and verified (RFC 9162
algorithms) at random positions; ``--full-verify`` also times `audit verify`.

    python bench/audit.py [--records N] [--postgres URL] [--full-verify] [--json]

PostgreSQL defaults to $MANTLET_TEST_POSTGRES_URL (.ci/services.sh starts one).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mantlet.audit import AuditLog, NoteSigner, NoteVerifier, merkle, verify_log
from mantlet.crypto.signing import SigningKey

RECORD = {
    "v": 1,
    "type": "request",
    "route": "/v1/chat/completions",
    "status": 200,
    "tenant": "acme",
    "principal": "k3x9w2m4qa",
    "model": "smollm2",
    "decisions": [{"side": "input", "action": "allow", "findings": {}, "ran": ["secrets"]}],
    "request_sha256": "a" * 64,
    "response_sha256": "b" * 64,
    "latency_ms": {"total": 12.5, "upstream": 10.1},
}


def appends_per_second(log: AuditLog, batch: int, seconds: float = 3.0) -> float:
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        log.append_many([{**RECORD, "i": done + i} for i in range(batch)])
        done += batch
    return done / (time.perf_counter() - started)


def fresh_postgres(url: str) -> str:
    name = f"bench_audit_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)


def timings(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=os.environ.get("MANTLET_TEST_POSTGRES_URL"))
    parser.add_argument("--proofs", type=int, default=200)
    parser.add_argument("--full-verify", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"appends_per_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        backends = {"sqlite": f"sqlite:///{Path(tmp) / 'a.db'}"}
        if args.postgres:
            backends["postgresql"] = fresh_postgres(args.postgres)
        for name, url in backends.items():
            log = AuditLog(url)
            out["appends_per_s"][name] = {
                f"batch_{b}": round(appends_per_second(log, b)) for b in (1, 10, 100)
            }
            log.close()
            print(f"{name}: {out['appends_per_s'][name]}", file=sys.stderr)

        log = AuditLog(f"sqlite:///{Path(tmp) / 'big.db'}")
        started = time.perf_counter()
        batch = 10_000
        for start in range(0, args.records, batch):
            count = min(batch, args.records - start)
            log.append_many([{**RECORD, "i": start + i} for i in range(count)])
        out["build_s"] = round(time.perf_counter() - started, 1)
        size = log.head().size
        root = log.root(size)
        rng = random.Random(1)
        generate, verify = [], []
        for _ in range(args.proofs):
            index = rng.randrange(size)
            t0 = time.perf_counter()
            path = log.inclusion_proof(index, size)
            leaf = log.record(index).leaf_hash  # type: ignore[union-attr]
            t1 = time.perf_counter()
            merkle.verify_inclusion(index, size, leaf, path, root)
            t2 = time.perf_counter()
            generate.append(t1 - t0)
            verify.append(t2 - t1)
        out["inclusion"] = {
            "tree_size": size,
            "proof_hashes": len(path),
            "generate": timings(generate),
            "verify": timings(verify),
        }
        generate, verify = [], []
        for _ in range(args.proofs):
            first = rng.randrange(1, size)
            t0 = time.perf_counter()
            proof = log.consistency_proof(first, size)
            first_root = log.root(first)
            t1 = time.perf_counter()
            merkle.verify_consistency(first, size, first_root, root, proof)
            t2 = time.perf_counter()
            generate.append(t1 - t0)
            verify.append(t2 - t1)
        out["consistency"] = {
            "tree_size": size,
            "generate_incl_first_root": timings(generate),
            "verify": timings(verify),
        }
        if args.full_verify:
            key = SigningKey.generate()
            signer = NoteSigner(log.origin, key.private)
            log.publish_checkpoint(signer)
            t0 = time.perf_counter()
            report = verify_log(log, NoteVerifier(signer.verifier_key))
            out["full_verify"] = {
                "ok": report.ok,
                "seconds": round(time.perf_counter() - t0, 1),
                "records_per_s": round(size / (time.perf_counter() - t0)),
            }
        log.close()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
