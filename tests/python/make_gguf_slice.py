#!/usr/bin/env python3
"""Cuts tests/data/smollm2-slice.gguf from the corpus's SmolLM2-135M-Instruct Q4_1 GGUF:
a few real tensors of layer 0 (Q4_1 attention and MLP weights, F32 norms) and the first 256
rows of the Q8_0 token embedding, with a little of the real metadata.

    python3 tests/python/make_gguf_slice.py ~/.cache/wcodec/corpus/SmolLM2-135M-Instruct.Q4_1.gguf tests/data/smollm2-slice.gguf

With `--layers N` it cuts every tensor of the first N layers instead (attention and MLP
weights, norms, at their full size) and 4096 rows of the token embedding: tensors of the
model's real shapes, for the GPU benchmark (`smollm2-layers.gguf`, not checked in):

    python3 tests/python/make_gguf_slice.py --layers 2 <corpus>/SmolLM2-135M-Instruct.Q4_1.gguf smollm2-layers.gguf

Needs the `gguf` package (pip install gguf==0.19.0).
"""
import sys

import numpy as np
import gguf

args = sys.argv[1:]
layers = None
if args[:1] == ["--layers"]:
    layers, args = int(args[1]), args[2:]
src, dst = args[0], args[1]
reader = gguf.GGUFReader(src)
writer = gguf.GGUFWriter(dst, "llama")
for key in ("general.name", "llama.embedding_length", "llama.block_count"):
    field = reader.fields.get(key)
    if field is None:
        continue
    value = field.contents()
    if isinstance(value, str):
        writer.add_string(key, value)
    else:
        writer.add_uint32(key, int(value))
wanted = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
          "blk.0.ffn_down.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"}
in_layers = lambda name: layers is not None and any(
    name.startswith(f"blk.{i}.") for i in range(layers))
for t in reader.tensors:
    data = np.asarray(t.data)
    if t.name == "token_embd.weight":
        data = data[:256 if layers is None else 4096]
    elif not (t.name in wanted if layers is None else in_layers(t.name)):
        continue
    writer.add_tensor(t.name, data, raw_dtype=t.tensor_type)
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()
