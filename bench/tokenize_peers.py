#!/usr/bin/env python3
# tokenize_peers.py - the peers of `tn-bench tokenize` on the same text, for
# bench/RESULTS.md: tiktoken (gpt2, cl100k_base), Hugging Face tokenizers
# (GPT-2 from encoder.json + vocab.bpe) and sentencepiece (spm8k), on one
# thread and on all, in MB/s of UTF-8 text; then checks that tn's ids equal
# tiktoken's on every document (--tn-ids FILE: `tn-tokenize encode --ids
# --split-docs` output for the same files, GPT-2).
# Usage: tokenize_peers.py DATA_DIR [--single-mb N] [--tn-ids FILE] FILE...
import argparse, lzma, os, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("files", nargs="+")
ap.add_argument("--single-mb", type=float, default=25.0,
                help="one-thread runs use the first documents up to this many MB")
ap.add_argument("--tn-ids")
a = ap.parse_args()

def read(f):
    op = lzma.open if f.endswith(".xz") else open
    with op(f, "rt", encoding="utf-8", newline="") as fh:
        return fh.read()

docs = []
for f in a.files:
    parts = read(f).split("\n<|endoftext|>\n")
    docs += [p + "\n" for p in parts[:-1]] + [parts[-1]]
size = lambda ds: sum(len(d.encode()) for d in ds)
total = size(docs)
single, acc = [], 0
for d in docs:
    if acc >= a.single_mb * 1e6:
        break
    single.append(d)
    acc += len(d.encode())
threads = os.cpu_count()
print(f"# {len(docs)} documents, {total/1e6:.1f} MB; one-thread runs on {len(single)} documents, "
      f"{acc/1e6:.1f} MB; {threads} threads", flush=True)

def report(name, thr, nbytes, ntok, s):
    print(f"{name:28s} {thr:3d} thr {nbytes/1e6:8.1f} MB {ntok:11d} tok {s:8.3f} s "
          f"{nbytes/s/1e6:8.1f} MB/s {ntok/s/1e6:7.2f} Mtok/s", flush=True)

def bench(name, one, many):
    t0 = time.time(); n = sum(len(x) for x in one(single)); report(name, 1, acc, n, time.time() - t0)
    t0 = time.time(); out = many(docs); n = sum(len(x) for x in out)
    report(name, threads, total, n, time.time() - t0)
    return out

import tiktoken
from tiktoken.load import load_tiktoken_bpe
# tiktoken 0.14's own patterns; the rank files come from DATA_DIR (no network)
PATS = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
}
FILES = {"gpt2": "tokenizers/gpt2/r50k_base.tiktoken", "cl100k_base": "tokenizers/cl100k_base.tiktoken"}
SPECIAL = {"gpt2": {"<|endoftext|>": 50256}, "cl100k_base": {"<|endoftext|>": 100257}}
gpt2_ids = None
for enc_name in ["gpt2", "cl100k_base"]:
    enc = tiktoken.Encoding(enc_name, pat_str=PATS[enc_name], special_tokens=SPECIAL[enc_name],
                            mergeable_ranks=load_tiktoken_bpe(os.path.join(a.data, FILES[enc_name])))
    out = bench("tiktoken " + enc_name, lambda ds: [enc.encode_ordinary(d) for d in ds],
                lambda ds: enc.encode_ordinary_batch(ds, num_threads=threads))
    if enc_name == "gpt2":
        gpt2_ids = out

os.environ["TOKENIZERS_PARALLELISM"] = "true"
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
hf = Tokenizer(models.BPE.from_file(os.path.join(a.data, "tokenizers/gpt2/encoder.json"),
                                    os.path.join(a.data, "tokenizers/gpt2/vocab.bpe")))
hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
hf.decoder = decoders.ByteLevel()
hf_single = single[: max(1, len(single) // 3)]
t0 = time.time(); n = sum(len(hf.encode(d).ids) for d in hf_single)
report("HF tokenizers gpt2", 1, size(hf_single), n, time.time() - t0)
t0 = time.time(); n = sum(len(e.ids) for e in hf.encode_batch(docs))
report("HF tokenizers gpt2", threads, total, n, time.time() - t0)

import sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=os.path.join(a.data, "tokenizers/spm8k/tokenizer.model"))
bench("sentencepiece spm8k", lambda ds: sp.encode(ds, num_threads=1),
      lambda ds: sp.encode(ds, num_threads=threads))
big = "".join(single)[: 8 << 20]
t0 = time.time(); n = len(sp.encode(big))
report("sentencepiece spm8k 1 doc", 1, len(big.encode()), n, time.time() - t0)

if a.tn_ids:
    with open(a.tn_ids) as f:
        lines = f.read().split("\n")[:-1]
    bad = sum(line != " ".join(map(str, ids)) for line, ids in zip(lines, gpt2_ids))
    bad += abs(len(lines) - len(gpt2_ids))
    print(f"tn vs tiktoken gpt2: {len(lines)} / {len(gpt2_ids)} documents, {bad} differ", flush=True)
