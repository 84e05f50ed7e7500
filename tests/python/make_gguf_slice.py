#!/usr/bin/env python3
"""Cuts tests/data/smollm2-slice.gguf from the corpus's SmolLM2-135M-Instruct Q4_1 GGUF:
a few real tensors of layer 0 (Q4_1 attention and MLP weights, F32 norms) and the first 256
rows of the Q8_0 token embedding, with a little of the real metadata.

    python3 tests/python/make_gguf_slice.py ~/.cache/wcodec/corpus/SmolLM2-135M-Instruct.Q4_1.gguf tests/data/smollm2-slice.gguf

Needs the `gguf` package (pip install gguf==0.19.0).
"""
import sys

import numpy as np
import gguf

src, dst = sys.argv[1], sys.argv[2]
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
for t in reader.tensors:
    data = np.asarray(t.data)
    if t.name == "token_embd.weight":
        data = data[:256]
    elif t.name not in wanted:
        continue
    writer.add_tensor(t.name, data, raw_dtype=t.tensor_type)
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()
