"""TensorFlow's string hashes, without TensorFlow: what Keras' Hashing layer and the lookup
layers' extra OOV buckets compute.

- ``fingerprint64(data)``: FarmHash's Fingerprint64 (the "farmhashna" 64-bit hash with its
  fixed seed), which ``tf.fingerprint`` and ``tf.strings.to_hash_bucket_fast`` use:
  bucket = fingerprint64(utf-8 bytes) mod num_buckets, unsigned.
- ``siphash24(key, data)``: SipHash-2-4 keyed with two 64-bit words, which
  ``tf.strings.to_hash_bucket_strong`` uses (Keras' Hashing with a salt).

Written from the public algorithm descriptions (google/farmhash's farmhashna, the SipHash
paper); checked against live TensorFlow at every length 0..300 (tests/test_text_vectorization.py).
Pure Python on 64-bit words masked to unsigned: the inputs are short tokens.
"""

from __future__ import annotations

import struct

MASK64 = (1 << 64) - 1
#: farmhashna's multipliers.
K0 = 0xC3A5C85C97CB3127
K1 = 0xB492B66FBE98F273
K2 = 0x9AE16A3B2F90404F
#: Fingerprint64's fixed seed for inputs over 64 bytes.
FINGERPRINT_SEED = 81


def _fetch64(data: bytes, at: int) -> int:
    return struct.unpack_from("<Q", data, at)[0]


def _fetch32(data: bytes, at: int) -> int:
    return struct.unpack_from("<I", data, at)[0]


def _rotate(value: int, shift: int) -> int:
    return value if shift == 0 else ((value >> shift) | (value << (64 - shift))) & MASK64


def _shift_mix(value: int) -> int:
    return value ^ (value >> 47)


def _hash16(u: int, v: int, mul: int) -> int:
    a = ((u ^ v) * mul) & MASK64
    a ^= a >> 47
    b = ((v ^ a) * mul) & MASK64
    b ^= b >> 47
    return (b * mul) & MASK64


def _len0to16(s: bytes) -> int:
    n = len(s)
    if n >= 8:
        mul = (K2 + n * 2) & MASK64
        a = (_fetch64(s, 0) + K2) & MASK64
        b = _fetch64(s, n - 8)
        c = (_rotate(b, 37) * mul + a) & MASK64
        d = ((_rotate(a, 25) + b) * mul) & MASK64
        return _hash16(c, d, mul)
    if n >= 4:
        mul = (K2 + n * 2) & MASK64
        a = _fetch32(s, 0)
        return _hash16((n + (a << 3)) & MASK64, _fetch32(s, n - 4), mul)
    if n > 0:
        y = (s[0] + (s[n >> 1] << 8)) & 0xFFFFFFFF
        z = (n + (s[n - 1] << 2)) & 0xFFFFFFFF
        return (_shift_mix(((y * K2) ^ (z * K0)) & MASK64) * K2) & MASK64
    return K2


def _len17to32(s: bytes) -> int:
    n = len(s)
    mul = (K2 + n * 2) & MASK64
    a = (_fetch64(s, 0) * K1) & MASK64
    b = _fetch64(s, 8)
    c = (_fetch64(s, n - 8) * mul) & MASK64
    d = (_fetch64(s, n - 16) * K2) & MASK64
    return _hash16(
        (_rotate((a + b) & MASK64, 43) + _rotate(c, 30) + d) & MASK64,
        (a + _rotate((b + K2) & MASK64, 18) + c) & MASK64,
        mul,
    )


def _len33to64(s: bytes) -> int:
    n = len(s)
    mul = (K2 + n * 2) & MASK64
    a = (_fetch64(s, 0) * K2) & MASK64
    b = _fetch64(s, 8)
    c = (_fetch64(s, n - 8) * mul) & MASK64
    d = (_fetch64(s, n - 16) * K2) & MASK64
    y = (_rotate((a + b) & MASK64, 43) + _rotate(c, 30) + d) & MASK64
    z = _hash16(y, (a + _rotate((b + K2) & MASK64, 18) + c) & MASK64, mul)
    e = (_fetch64(s, 16) * mul) & MASK64
    f = _fetch64(s, 24)
    g = ((y + _fetch64(s, n - 32)) * mul) & MASK64
    h = ((z + _fetch64(s, n - 24)) * mul) & MASK64
    return _hash16(
        (_rotate((e + f) & MASK64, 43) + _rotate(g, 30) + h) & MASK64,
        (e + _rotate((f + a) & MASK64, 18) + g) & MASK64,
        mul,
    )


def _weak32(s: bytes, at: int, a: int, b: int) -> tuple[int, int]:
    w, x, y, z = (_fetch64(s, at + 8 * i) for i in range(4))
    a = (a + w) & MASK64
    b = _rotate((b + a + z) & MASK64, 21)
    c = a
    a = (a + x + y) & MASK64
    b = (b + _rotate(a, 44)) & MASK64
    return (a + z) & MASK64, (b + c) & MASK64


def fingerprint64(data: bytes) -> int:
    """FarmHash Fingerprint64 of ``data`` (as tf.fingerprint's "farmhash64"), unsigned."""
    s = bytes(data)
    n = len(s)
    if n <= 16:
        return _len0to16(s)
    if n <= 32:
        return _len17to32(s)
    if n <= 64:
        return _len33to64(s)
    x = FINGERPRINT_SEED
    y = (FINGERPRINT_SEED * K1 + 113) & MASK64
    z = (_shift_mix((y * K2 + 113) & MASK64) * K2) & MASK64
    v0 = v1 = w0 = w1 = 0
    x = (x * K2 + _fetch64(s, 0)) & MASK64
    end = ((n - 1) // 64) * 64
    last64 = end + ((n - 1) & 63) - 63
    at = 0
    while True:
        x = (_rotate((x + y + v0 + _fetch64(s, at + 8)) & MASK64, 37) * K1) & MASK64
        y = (_rotate((y + v1 + _fetch64(s, at + 48)) & MASK64, 42) * K1) & MASK64
        x ^= w1
        y = (y + v0 + _fetch64(s, at + 40)) & MASK64
        z = (_rotate((z + w0) & MASK64, 33) * K1) & MASK64
        v0, v1 = _weak32(s, at, (v1 * K1) & MASK64, (x + w0) & MASK64)
        w0, w1 = _weak32(s, at + 32, (z + w1) & MASK64, (y + _fetch64(s, at + 16)) & MASK64)
        z, x = x, z
        at += 64
        if at == end:
            break
    mul = (K1 + ((z & 0xFF) << 1)) & MASK64
    at = last64
    w0 = (w0 + ((n - 1) & 63)) & MASK64
    v0 = (v0 + w0) & MASK64
    w0 = (w0 + v0) & MASK64
    x = (_rotate((x + y + v0 + _fetch64(s, at + 8)) & MASK64, 37) * mul) & MASK64
    y = (_rotate((y + v1 + _fetch64(s, at + 48)) & MASK64, 42) * mul) & MASK64
    x ^= (w1 * 9) & MASK64
    y = (y + v0 * 9 + _fetch64(s, at + 40)) & MASK64
    z = (_rotate((z + w0) & MASK64, 33) * mul) & MASK64
    v0, v1 = _weak32(s, at, (v1 * mul) & MASK64, (x + w0) & MASK64)
    w0, w1 = _weak32(s, at + 32, (z + w1) & MASK64, (y + _fetch64(s, at + 16)) & MASK64)
    z, x = x, z
    return _hash16(
        (_hash16(v0, w0, mul) + _shift_mix(y) * K0 + z) & MASK64,
        (_hash16(v1, w1, mul) + x) & MASK64,
        mul,
    )


def _sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & MASK64
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & MASK64
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & MASK64
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & MASK64
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & MASK64


def siphash24(key: tuple[int, int], data: bytes) -> int:
    """SipHash-2-4 of ``data`` under the 128-bit key (k0, k1), as TensorFlow's keyed hash."""
    k0, k1 = key[0] & MASK64, key[1] & MASK64
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573
    s = bytes(data)
    n = len(s)
    full = n - n % 8
    for at in range(0, full, 8):
        m = _fetch64(s, at)
        v3 ^= m
        v0, v1, v2, v3 = _sip_round(*_sip_round(v0, v1, v2, v3))
        v0 ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(s[full:], "little")
    v3 ^= last
    v0, v1, v2, v3 = _sip_round(*_sip_round(v0, v1, v2, v3))
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(4):
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def hash_bucket_fast(data: bytes, num_buckets: int) -> int:
    """tf.strings.to_hash_bucket_fast of one string."""
    return fingerprint64(data) % num_buckets


def hash_bucket_strong(data: bytes, num_buckets: int, key: tuple[int, int]) -> int:
    """tf.strings.to_hash_bucket_strong of one string."""
    return siphash24(key, data) % num_buckets
