"""Hazmat: the keyed green-list function of the KGW watermark (version 1).

Use :mod:`mantlet.watermark` instead of calling this module directly; it picks
the parameters and keeps keys out of logs. The definition below is the wire
format of the watermark: changing it makes every earlier watermark
undetectable, so it is versioned (``SCHEME``) and pinned by test vectors.

For a secret key ``K``, the previous ``h`` token ids ``c_1..c_h`` and a token
id ``v``::

    seed   = first 8 bytes (big-endian) of HMAC-SHA256(K, DOMAIN || c_1..c_h as uint32 BE)
    u(v)   = splitmix64_mix(seed XOR ((v + 1) * 0x9E3779B97F4A7C15 mod 2^64))
    green  = u(v) < floor(gamma * 2^64)

HMAC-SHA256 is the keyed PRF of the context (one call per generated token);
the per-token step is a fixed 64-bit integer mixer of that secret seed, the
same role the seeded PRNG plays in Kirchenbauer et al.'s KGW. It is pure
integer arithmetic, so the green lists are identical on every machine, numpy
version and model runtime, and the detector tests one token per step with one
HMAC and a few integer operations. Each token is green independently with
probability ``gamma`` (not an exact ``gamma * |V|`` list), which makes the
detector's null distribution exactly Binomial(T, gamma) for distinct
(context, token) pairs.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import numpy as np
import numpy.typing as npt

SCHEME = "kgw-hmac-sha256-v1"
DOMAIN = b"mantlet/" + SCHEME.encode() + b"/"
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def context_seed(key: bytes, context: tuple[int, ...]) -> int:
    """The 64-bit secret seed of one context (the previous h token ids)."""
    message = DOMAIN + struct.pack(f">{len(context)}I", *context)
    return int.from_bytes(hmac.digest(key, message, hashlib.sha256)[:8], "big")


def threshold(gamma: float) -> int:
    """Tokens whose mixed value lies below this are green."""
    if not 0.0 < gamma < 1.0:
        raise ValueError("gamma must lie strictly between 0 and 1")
    return min(int(gamma * 2.0**64), _MASK64)


def is_green(seed: int, token: int, limit: int) -> bool:
    """Membership of one token: what the detector calls once per step."""
    z = seed ^ (((token + 1) * _GOLDEN) & _MASK64)
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return (z ^ (z >> 31)) < limit


class VocabMixer:
    """The vectorised form of :func:`is_green` over a whole vocabulary.

    ``(v + 1) * golden`` is precomputed once; each context then costs six
    uint64 array operations and one comparison (numpy wraps uint64
    multiplication modulo 2^64, which is exactly the arithmetic above).
    """

    def __init__(self, vocab_size: int) -> None:
        ids = np.arange(1, vocab_size + 1, dtype=np.uint64)
        self._spread = ids * np.uint64(_GOLDEN)
        self._tmp = np.empty(vocab_size, dtype=np.uint64)
        self.vocab_size = vocab_size

    def green_mask(self, seed: int, limit: int) -> npt.NDArray[np.bool_]:
        z = self._tmp
        np.bitwise_xor(self._spread, np.uint64(seed), out=z)
        z ^= z >> np.uint64(30)
        z *= np.uint64(_M1)
        z ^= z >> np.uint64(27)
        z *= np.uint64(_M2)
        z ^= z >> np.uint64(31)
        mask: npt.NDArray[np.bool_] = z < np.uint64(limit)
        return mask
