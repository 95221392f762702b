"""Reading and decoding image files: content-sniffed formats, pixel limits, RGB output."""

from lookalike.decode.image import Decoded, decode, decode_file, read_file, sha256_hex

__all__ = ["Decoded", "decode", "decode_file", "read_file", "sha256_hex"]
