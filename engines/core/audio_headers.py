"""What a file's first bytes say: its container, and the sample rate or length its header declares.

Read before decoding, so a wrong extension, a text file or a header that lies
gets a precise message instead of a decoder's traceback.
"""

from __future__ import annotations

import struct

MAGIC = (
    (b"RIFF", "WAV"),
    (b"RF64", "WAV"),
    (b"fLaC", "FLAC"),
    (b"OggS", "Ogg"),
    (b"ID3", "MP3"),
    (b"FORM", "AIFF"),
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (b"\x30\x26\xb2\x75", "ASF/WMA"),
)


def sniff(head: bytes) -> str | None:
    """Name the container from its first bytes, or None when unrecognised."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "MP4/M4A"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF0) == 0xF0:
        return "AAC (ADTS)"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return "MP3"
    return None


def looks_like_text(head: bytes) -> bool:
    if not head or b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable / max(1, len(text)) > 0.95


def wav_declared_frames(head: bytes) -> int:
    """Frames a RIFF/WAVE header's 'data' chunk claims (0 when the header does not say)."""
    if not (head[:4] == b"RIFF" and head[8:12] == b"WAVE"):
        return 0
    pos, align = 12, 0
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if cid == b"fmt " and pos + 22 <= len(head):
            align = struct.unpack("<H", head[pos + 20 : pos + 22])[0]
        if cid == b"data":
            return size // align if align and size != 0xFFFFFFFF else 0
        pos += 8 + size + (size & 1)
    return 0


def wav_header_rate(head: bytes) -> int | None:
    """Sample rate in a RIFF/WAVE 'fmt ' chunk, if the header holds one."""
    if not (head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE"):
        return None
    pos = 12
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if cid == b"fmt " and pos + 16 <= len(head):
            return struct.unpack("<I", head[pos + 12 : pos + 16])[0]
        pos += 8 + size + (size & 1)
    return None


def flac_header_rate(head: bytes) -> int | None:
    """Sample rate (20 bits) in a FLAC STREAMINFO block, if the header holds one."""
    if not (head[:4] == b"fLaC" and len(head) >= 21 and head[4] & 0x7F == 0):
        return None
    return (head[18] << 12) | (head[19] << 4) | (head[20] >> 4)


def aiff_header_rate(head: bytes) -> int | None:
    """Sample rate (80-bit float) in an AIFF 'COMM' chunk, if present."""
    if not (head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC")):
        return None
    pos = 12
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack(">I", head[pos + 4 : pos + 8])[0]
        if cid == b"COMM" and pos + 26 <= len(head):
            exp_hi = struct.unpack(">H", head[pos + 16 : pos + 18])[0]
            mant = struct.unpack(">Q", head[pos + 18 : pos + 26])[0]
            exp = (exp_hi & 0x7FFF) - 16383 - 63
            return int(mant * 2.0**exp) if mant else 0
        pos += 8 + size + (size & 1)
    return None
