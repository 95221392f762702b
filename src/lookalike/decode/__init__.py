"""Reading and decoding image files: content-sniffed formats, pixel limits, RGB output,
bounded memory for large images (reduced decoding, a process-wide gate)."""

from lookalike.decode.gate import DecodeGate, decode_gate
from lookalike.decode.image import Decoded, decode, decode_file, read_file, sha256_hex
from lookalike.decode.rgb import to_rgb

__all__ = [
    "DecodeGate",
    "Decoded",
    "decode",
    "decode_file",
    "decode_gate",
    "read_file",
    "sha256_hex",
    "to_rgb",
]
