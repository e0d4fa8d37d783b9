"""Our RFC 9162 tree against an independent implementation (pymerkle) on
every size from 1 to 2000, and the RFC's verification algorithms rejecting
altered proofs."""

from __future__ import annotations

import random
import warnings

import pytest
from pymerkle import InmemoryTree

from mantlet.audit import merkle


def build(count: int) -> tuple[list[bytes], dict[tuple[int, int], bytes], InmemoryTree]:
    entries = [f"record {i}".encode() for i in range(count)]
    nodes: dict[tuple[int, int], bytes] = {}
    frontier = merkle.Frontier()
    reference = InmemoryTree(algorithm="sha256")
    for entry in entries:
        nodes.update({(lv, ix): h for lv, ix, h in frontier.append(merkle.leaf_hash(entry))})
        reference.append_entry(entry)
    return entries, nodes, reference


ENTRIES, NODES, REFERENCE = build(2000)


def lookup(level: int, index: int) -> bytes:
    return NODES[(level, index)]


def test_roots_match_pymerkle_for_every_size_up_to_2000() -> None:
    frontier = merkle.Frontier()
    for size in range(1, 2001):
        frontier.append(merkle.leaf_hash(ENTRIES[size - 1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            expected = REFERENCE.get_state(size)
        assert merkle.range_hash(0, size, lookup) == expected, size
        assert frontier.root() == expected, size


def test_inclusion_proofs_match_pymerkle_and_verify() -> None:
    rng = random.Random(7)
    for size in range(1, 2001):
        root = merkle.range_hash(0, size, lookup)
        for index in {0, size - 1, size // 2, rng.randrange(size)}:
            proof = merkle.inclusion_proof(index, size, lookup)
            theirs = REFERENCE.prove_inclusion(index + 1, size).serialize()["path"][1:]
            assert [p.hex() for p in proof] == theirs, (index, size)
            merkle.verify_inclusion(index, size, merkle.leaf_hash(ENTRIES[index]), proof, root)


def test_consistency_proofs_verify_against_pymerkle_roots() -> None:
    """pymerkle lays consistency proofs out its own way (not RFC 9162's), so
    the independent check is: our RFC proofs lead from pymerkle's first root
    to pymerkle's second root."""
    rng = random.Random(11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        roots = {size: REFERENCE.get_state(size) for size in range(1, 2001)}
    for size in range(1, 2001):
        for first in {1, size, max(1, size // 2), rng.randrange(1, size + 1)}:
            proof = merkle.consistency_proof(first, size, lookup)
            merkle.verify_consistency(first, size, roots[first], roots[size], proof)


@pytest.mark.parametrize("size", [2, 3, 7, 8, 100, 1999])
def test_altered_inclusion_proofs_fail(size: int) -> None:
    root = merkle.range_hash(0, size, lookup)
    index = size // 3
    proof = merkle.inclusion_proof(index, size, lookup)
    leaf = merkle.leaf_hash(ENTRIES[index])
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(index, size, merkle.leaf_hash(b"forged"), proof, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(index, size, leaf, proof[:-1], root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(index, size, leaf, [*proof, proof[0]], root)
    if size > 2:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion((index + 1) % size, size, leaf, proof, root)
    flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(index, size, leaf, flipped, root)


@pytest.mark.parametrize(("first", "second"), [(1, 2), (3, 7), (4, 8), (6, 1999), (1000, 2000)])
def test_altered_consistency_proofs_fail(first: int, second: int) -> None:
    proof = merkle.consistency_proof(first, second, lookup)
    roots = merkle.range_hash(0, first, lookup), merkle.range_hash(0, second, lookup)
    merkle.verify_consistency(first, second, *roots, proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(first, second, merkle.leaf_hash(b"x"), roots[1], proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(first, second, roots[0], merkle.leaf_hash(b"x"), proof)
    if proof:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(first, second, *roots, proof[1:])
        tampered = [bytes([proof[-1][0] ^ 1]) + proof[-1][1:], *proof[:-1]][::-1]
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(first, second, *roots, tampered)


def test_out_of_range_requests_are_refused() -> None:
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_proof(5, 5, lookup)
    with pytest.raises(merkle.ProofError):
        merkle.consistency_proof(0, 5, lookup)
    with pytest.raises(merkle.ProofError):
        merkle.consistency_proof(6, 5, lookup)
