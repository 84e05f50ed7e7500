#!/usr/bin/env python3
"""Writes model files with the reference Python libraries, or checks that files load in them.

    reference_files.py write DIR   writes DIR/reference.safetensors and DIR/reference.gguf
    reference_files.py check DIR   loads DIR/*.back (decompressed copies) and compares every
                                   tensor with the originals

Used by crates/cli/tests/python_interop.rs; needs numpy, safetensors and gguf (.ci/run installs
them).
"""
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import quants
from safetensors.numpy import load_file, save_file


def weights(shape, seed, scale=0.05):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def safetensors_tensors():
    w = weights((64, 96), 1)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 65504.0], np.float32)
    return {
        "f32": w,
        "f32.special": special,
        "f16": w.astype(np.float16),
        "f16.special": special.astype(np.float16),
        "f64": w[:8].astype(np.float64),
        "i8": np.clip(np.round(w / np.abs(w).max() * 127), -127, 127).astype(np.int8),
        "u8": (np.arange(300) % 256).astype(np.uint8).reshape(3, 100),
        "i16": (np.arange(-500, 500) * 3).astype(np.int16),
        "i32": np.arange(-1000, 1000, 7, dtype=np.int32).reshape(2, -1),
        "i64": np.arange(40, dtype=np.int64) * -123456789,
        "bool": (np.arange(77) % 3 == 0),
        "scalar": np.array(3.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
        "cube": weights((3, 5, 7), 2),
    }


GGUF_TYPES = [Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]


def gguf_tensors():
    out = {}
    for i, qtype in enumerate(GGUF_TYPES):
        out[f"blk.{i}.{qtype.name.lower()}.weight"] = (qtype, weights((8, 512), 10 + i))
    out["output_norm.weight"] = (Q.F32, weights((512,), 99))
    out["token_embd.weight"] = (Q.F16, weights((16, 256), 98))
    return out


def write(directory):
    d = Path(directory)
    save_file(safetensors_tensors(), str(d / "reference.safetensors"), metadata={"source": "wcodec tests"})
    writer = gguf.GGUFWriter(str(d / "reference.gguf"), "llama")
    writer.add_name("wcodec-reference")
    writer.add_uint32("wcodec.test.value", 7)
    writer.add_array("wcodec.test.tokens", ["a", "bc", "def"])
    for name, (qtype, data) in gguf_tensors().items():
        if qtype == Q.F32:
            writer.add_tensor(name, data)
        elif qtype == Q.F16:
            writer.add_tensor(name, data.astype(np.float16))
        else:
            try:
                blocks = quants.quantize(data, qtype)
            except NotImplementedError:
                # No Python quantizer for this type: random blocks in its exact byte layout.
                block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
                rows, cols = data.shape
                rng = np.random.default_rng(int(qtype))
                blocks = rng.integers(0, 256, (rows, cols // block_elems * block_bytes), np.uint8)
            writer.add_tensor(name, blocks, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def check(directory):
    d = Path(directory)
    original = load_file(str(d / "reference.safetensors"))
    back = load_file(str(d / "reference.safetensors.back"))
    assert original.keys() == back.keys()
    for name, a in original.items():
        b = back[name]
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    a = gguf.GGUFReader(str(d / "reference.gguf"))
    b = gguf.GGUFReader(str(d / "reference.gguf.back"))
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for ta, tb in zip(a.tensors, b.tensors):
        assert ta.tensor_type == tb.tensor_type, ta.name
        assert np.array_equal(np.asarray(ta.data).view(np.uint8), np.asarray(tb.data).view(np.uint8)), ta.name
        if ta.tensor_type in (Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1):
            deq = quants.dequantize(np.asarray(tb.data), tb.tensor_type)
            ref = quants.dequantize(np.asarray(ta.data), ta.tensor_type)
            assert np.array_equal(deq, ref), ta.name
    assert b.fields["wcodec.test.value"].parts[-1][0] == 7
    print("reference files load and match")


if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](sys.argv[2])
