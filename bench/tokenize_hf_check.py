#!/usr/bin/env python3
# tokenize_hf_check.py - does a tokenizer.json written by `tn-tokenize train`
# give the same ids in Hugging Face tokenizers as in tn? For each TEXT, TEXT.whole.ids
# and TEXT.lines.ids must hold tn's `encode --ids` and `encode --ids --lines` output.
# Usage: tokenize_hf_check.py TOKENIZER.json TEXT...
import sys
from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
tok.encode_special_tokens = True  # tn never parses specials out of text
bad = 0
for path in sys.argv[2:]:
    text = open(path, encoding="utf-8", newline="").read()
    whole = open(path + ".whole.ids").read().split("\n")[0]
    ok = whole == " ".join(map(str, tok.encode(text, add_special_tokens=False).ids))
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    tn_lines = open(path + ".lines.ids").read().split("\n")[:-1]
    hf_lines = [" ".join(map(str, e.ids)) for e in tok.encode_batch(lines, add_special_tokens=False)]
    nl = sum(x != y for x, y in zip(tn_lines, hf_lines)) + abs(len(tn_lines) - len(hf_lines))
    print(f"{path}: whole {'same' if ok else 'DIFFERENT'}, lines: {len(hf_lines)}, {nl} differ")
    bad += (not ok) + nl
print("HF check:", "all ids identical" if bad == 0 else f"{bad} differences")
sys.exit(1 if bad else 0)
