"""Real PNG images built from bytes, for the Python integration tests (no image library needed)."""
import struct
import zlib


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)


def png(w, h, text=None, idat=None):
    """A w x h RGB PNG (a gradient); text adds a tEXt chunk, idat replaces the pixel data."""
    raw = b"".join(b"\0" + bytes((x * 3 + y) & 255 for x in range(w * 3)) for y in range(h))
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    if text:
        out += png_chunk(b"tEXt", b"Comment\0" + text)
    out += png_chunk(b"IDAT", idat if idat is not None else zlib.compress(raw))
    return out + png_chunk(b"IEND", b"")
