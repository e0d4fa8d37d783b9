"""Tamper-evident audit log: RFC 9162 Merkle tree, signed C2SP checkpoints,
inclusion and consistency proofs, full verification."""

from mantlet.audit.checkpoint import Checkpoint, CheckpointError, NoteSigner, NoteVerifier
from mantlet.audit.store import AuditLog, LogHead, StoredRecord, canonical_json
from mantlet.audit.verify import Problem, VerifyReport, verify_log

__all__ = [
    "AuditLog",
    "Checkpoint",
    "CheckpointError",
    "LogHead",
    "NoteSigner",
    "NoteVerifier",
    "Problem",
    "StoredRecord",
    "VerifyReport",
    "canonical_json",
    "verify_log",
]
