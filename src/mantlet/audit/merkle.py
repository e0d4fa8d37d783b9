"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing and proofs.

Hand-written because the hashing, proof construction and, above all, the
verification algorithms must follow RFC 9162 section 2.1 exactly, and the
proofs must be built from a node store (a database) rather than a tree held in
memory; the tests check every size from 1 to 2000 against ``pymerkle``.

Trees are addressed by ranges of leaf indices ``[lo, hi)``. A range whose size
is a power of two and whose start is a multiple of it is a *perfect* subtree,
stored as node ``(level, lo >> level)``. Every other range the RFC recurses
into splits into O(log n) perfect subtrees, so a proof needs O(log^2 n) node
lookups and no rehashing of leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "Frontier",
    "ProofError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "needed_nodes",
    "node_hash",
    "range_hash",
    "root_from_consistency",
    "root_from_inclusion",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

NodeLookup = Callable[[int, int], bytes]
"""``(level, index) -> hash`` of a perfect subtree; raises KeyError if absent."""

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof does not verify, or was asked for out of range."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_hash(lo: int, hi: int, node: NodeLookup) -> bytes:
    """MTH(D[lo:hi]) from stored perfect subtrees."""
    size = hi - lo
    if size <= 0:
        raise ProofError(f"empty range [{lo}, {hi})")
    if size & (size - 1) == 0 and lo % size == 0:
        level = size.bit_length() - 1
        return node(level, lo >> level)
    k = _split(size)
    return node_hash(range_hash(lo, lo + k, node), range_hash(lo + k, hi, node))


def inclusion_proof(index: int, size: int, node: NodeLookup) -> list[bytes]:
    """PATH(m, D[0:n]) of RFC 9162 section 2.1.3.1."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    # Iterative form of the RFC's recursion; proof order is leaf-to-root.
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(range_hash(lo + k, hi, node))
            hi = lo + k
        else:
            path.append(range_hash(lo, lo + k, node))
            lo = lo + k
    path.reverse()
    return path


def consistency_proof(first: int, second: int, node: NodeLookup) -> list[bytes]:
    """PROOF(m, D[0:n]) of RFC 9162 section 2.1.4.1."""
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    return _subproof(first, 0, second, True, node)


def _subproof(m: int, lo: int, hi: int, complete: bool, node: NodeLookup) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if complete else [range_hash(lo, hi, node)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, lo, lo + k, complete, node), range_hash(lo + k, hi, node)]
    return [*_subproof(m - k, lo + k, hi, False, node), range_hash(lo, lo + k, node)]


def needed_nodes(build: Callable[[NodeLookup], object]) -> set[tuple[int, int]]:
    """The perfect subtrees ``build`` will look up, found by a dry run with
    dummy hashes, so a store can fetch them in one query."""
    wanted: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return EMPTY_ROOT

    build(record)
    return wanted


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """The root an inclusion proof implies (RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree allows")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree needs")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> None:
    """Raises ProofError unless ``leaf`` is at ``index`` in the tree ``root``."""
    if root_from_inclusion(index, size, leaf, path) != root:
        raise ProofError("inclusion proof does not lead to the expected root")


def root_from_consistency(
    first: int, second: int, first_root: bytes, proof: Sequence[bytes]
) -> bytes:
    """The second root a consistency proof implies, after checking it against
    ``first_root`` (RFC 9162 section 2.1.4.2)."""
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first == second:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        return first_root
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    if not path:
        raise ProofError("consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the trees allow")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the trees need")
    if fr != first_root:
        raise ProofError("consistency proof does not match the first root")
    return sr


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raises ProofError unless tree ``second_root`` extends ``first_root``."""
    if root_from_consistency(first, second, first_root, proof) != second_root:
        raise ProofError("consistency proof does not lead to the second root")


class Frontier:
    """The right edge of a growing tree: one perfect-subtree hash per set bit
    of the size. Appending is O(1) amortised and yields the new stored nodes;
    the root at any size is a fold of the frontier."""

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: Iterable[bytes] = ()) -> None:
        self.size = size
        # Highest level first, matching the order of set bits in `size`.
        self.nodes = list(nodes)
        if len(self.nodes) != size.bit_count():
            raise ValueError("frontier does not match the tree size")

    @staticmethod
    def positions(size: int) -> list[tuple[int, int]]:
        """The (level, index) of each frontier node of a tree of ``size``."""
        out, start = [], 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                out.append((level, start >> level))
                start += 1 << level
        return out

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Adds a leaf hash; returns every new perfect node (level, index, hash)."""
        index = self.size
        created = [(0, index, leaf)]
        current, level = leaf, 0
        while index >> level & 1:
            current = node_hash(self.nodes.pop(), current)
            level += 1
            created.append((level, index >> level, current))
        self.nodes.append(current)
        self.size += 1
        return created

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        root = self.nodes[-1]
        for left in reversed(self.nodes[:-1]):
            root = node_hash(left, root)
        return root


def root_from_leaf_hashes(leaves: Iterable[bytes]) -> bytes:
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()
