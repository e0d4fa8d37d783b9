"""Streaming, chunked authenticated file encryption for datasets and exports.

Hand-written on ``cryptography``'s AES-GCM because no maintained library
offers the STREAM construction (Hoang et al., 2015) in Python: each chunk is
sealed with nonce ``prefix || counter || last-flag`` and the file header as
associated data, so a modified, reordered, dropped or appended chunk and a
truncated file all fail to decrypt. Memory use is one chunk.

Layout: ``MNTLENC1 | u8 len | master key id | u16 len | wrapped file key |
u32 chunk size | 7-byte nonce prefix | chunks``. The per-file key is random
and wrapped by the key provider, so any provider (file, environment, KMS)
works unchanged.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mantlet.crypto.keyproviders import KeyProvider
from mantlet.errors import MantletError

__all__ = ["FileCryptError", "decrypt_stream", "encrypt_stream"]

MAGIC = b"MNTLENC1"
DEFAULT_CHUNK = 64 * 1024
_TAG = 16
_PREFIX = 7


class FileCryptError(MantletError):
    """The file is not ours, was modified, reordered or truncated."""


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


def encrypt_stream(
    source: BinaryIO,
    target: BinaryIO,
    provider: KeyProvider,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Encrypts ``source`` into ``target``; returns plaintext bytes read."""
    if not 1 <= chunk_size <= 1 << 24:
        raise ValueError("chunk size must be between 1 byte and 16 MiB")
    file_key = secrets.token_bytes(32)
    prefix = secrets.token_bytes(_PREFIX)
    key_id, wrapped = provider.wrap(file_key, MAGIC)
    encoded_id = key_id.encode("utf-8")
    header = (
        MAGIC
        + struct.pack(">B", len(encoded_id))
        + encoded_id
        + struct.pack(">H", len(wrapped))
        + wrapped
        + struct.pack(">I", chunk_size)
        + prefix
    )
    target.write(header)
    aead = AESGCM(file_key)
    total, counter = 0, 0
    chunk = source.read(chunk_size)
    while True:
        following = source.read(chunk_size) if len(chunk) == chunk_size else b""
        last = not following
        target.write(aead.encrypt(_nonce(prefix, counter, last), chunk, header))
        total += len(chunk)
        if progress:
            progress(len(chunk))
        if last:
            return total
        counter += 1
        if counter >= 1 << 32:
            raise FileCryptError("file too large for one encryption stream")
        chunk = following


def _read_exact(source: BinaryIO, size: int) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise FileCryptError("file is truncated (header incomplete)")
    return data


def decrypt_stream(
    source: BinaryIO,
    target: BinaryIO,
    provider: KeyProvider,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Decrypts into ``target``; raises FileCryptError on any tampering. The
    caller should write to a temporary file and keep it only on success."""
    if source.read(len(MAGIC)) != MAGIC:
        raise FileCryptError("not a Mantlet encrypted file")
    id_len = _read_exact(source, 1)
    encoded_id = _read_exact(source, id_len[0])
    wrapped_len = _read_exact(source, 2)
    wrapped = _read_exact(source, struct.unpack(">H", wrapped_len)[0])
    size_bytes = _read_exact(source, 4)
    prefix = _read_exact(source, _PREFIX)
    header = MAGIC + id_len + encoded_id + wrapped_len + wrapped + size_bytes + prefix
    chunk_size = struct.unpack(">I", size_bytes)[0]
    try:
        file_key = provider.unwrap(encoded_id.decode("utf-8"), wrapped, MAGIC)
    except UnicodeDecodeError:
        raise FileCryptError("file header is corrupt") from None
    aead = AESGCM(file_key)
    total, counter = 0, 0
    sealed = source.read(chunk_size + _TAG)
    while True:
        if len(sealed) < _TAG:
            raise FileCryptError("file is truncated (a chunk is missing)")
        following = source.read(chunk_size + _TAG) if len(sealed) == chunk_size + _TAG else b""
        last = not following
        try:
            plain = aead.decrypt(_nonce(prefix, counter, last), sealed, header)
        except InvalidTag:
            reason = "truncated or modified" if last else "modified or reordered"
            raise FileCryptError(f"chunk {counter} does not authenticate ({reason})") from None
        target.write(plain)
        total += len(plain)
        if progress:
            progress(len(plain))
        if last:
            return total
        counter += 1
        sealed = following
