#!/usr/bin/env python3
"""Writes a large safetensors file of real weights tiled up, streaming (constant memory):

    make_big_safetensors.py SOURCE.safetensors OUT.safetensors GIB [TENSOR_MIB]

Every tensor of OUT is TENSOR_MIB (default 128) of int8 rows cut cyclically from the int8
tensors of SOURCE (e.g. the corpus's minilm-int8-per-tensor.safetensors), shaped [rows, 384].
Used to check that wcodec compresses and decompresses files far larger than its memory.
"""
import json
import struct
import sys

src, dst, gib = sys.argv[1], sys.argv[2], float(sys.argv[3])
tensor_mib = int(sys.argv[4]) if len(sys.argv) > 4 else 128

with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
pool = bytearray()
for name, info in header.items():
    if name != "__metadata__" and info["dtype"] == "I8" and info["shape"][-1] == 384:
        a, b = info["data_offsets"]
        pool += data[a:b]
cols = 384
tensor_bytes = (tensor_mib << 20) // cols * cols
count = max(1, int(gib * (1 << 30)) // tensor_bytes)
entries, offset = {}, 0
for i in range(count):
    entries[f"layers.{i}.weight"] = {"dtype": "I8", "shape": [tensor_bytes // cols, cols],
                                     "data_offsets": [offset, offset + tensor_bytes]}
    offset += tensor_bytes
head = json.dumps(entries, separators=(",", ":")).encode()
head += b" " * (-len(head) % 8)
with open(dst, "wb") as out:
    out.write(struct.pack("<Q", len(head)))
    out.write(head)
    for i in range(count):
        start = (i * 7919 * cols) % len(pool)
        rot = pool[start:] + pool[:start]
        reps = tensor_bytes // len(rot) + 1
        out.write((rot * reps)[:tensor_bytes])
print(f"{dst}: {count} tensors of {tensor_bytes} bytes, {8 + len(head) + offset} bytes")
