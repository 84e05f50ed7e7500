"""ZipNN on the tensors of a safetensors file, for comparison with `cargo xtask bench-encode`
and `bench-decode` on the same machine: ratio, and compress / decompress MB/s of the tensor
bytes on 1 and 2 threads (median of at least 5 runs over 0.5 s), every round trip checked.

    python3 -m pip install zipnn
    python3 xtask/cpu/zipnn_anchor.py ~/.cache/wcodec/corpus/minilm-f16.safetensors float16

Only the tensors of the given dtype are taken (ZipNN's byte mode codes one dtype at a time).
A run whose round trip is not exact prints that and no speed.
"""
import json
import struct
import sys
import time

import zipnn
from importlib.metadata import version

SAFETENSORS_DTYPE = {"float16": "F16", "bfloat16": "BF16"}


def tensor_bytes(path, dtype):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    out = bytearray()
    for name, t in header.items():
        if name != "__metadata__" and t["dtype"] == SAFETENSORS_DTYPE[dtype]:
            a, b = t["data_offsets"]
            out += raw[8 + n + a : 8 + n + b]
    return bytes(out)


def median_time(fn, arg, min_time=0.5):
    times = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        result = fn(arg)
        times.append(time.perf_counter() - t0)
    times.sort()
    return result, times[len(times) // 2]


def main():
    path, dtype = sys.argv[1], sys.argv[2]
    tensors = tensor_bytes(path, dtype)
    mb = len(tensors) / 1e6
    for threads in (1, 2):
        z = zipnn.ZipNN(input_format="byte", bytearray_dtype=dtype, threads=threads)
        packed, t_compress = median_time(z.compress, tensors)
        unpacked, t_decompress = median_time(z.decompress, packed)
        if bytes(unpacked) != tensors:
            print(f"zipnn {dtype} threads={threads}: round trip NOT exact")
            continue
        print(
            f"zipnn {version('zipnn')} {dtype} threads={threads}: {len(tensors)} -> {len(packed)} "
            f"bytes, ratio {len(tensors) / len(packed):.4f}, compress {mb / t_compress:.0f} MB/s, "
            f"decompress {mb / t_decompress:.0f} MB/s"
        )


if __name__ == "__main__":
    main()
