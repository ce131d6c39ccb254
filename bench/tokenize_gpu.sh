#!/bin/sh
# tokenize_gpu.sh - the tn-tokenize figures of bench/RESULTS.md, on a machine
# without libarchive headers (the GPU machine): run from a folder holding
# bin/ (tn-bench, tn-tokenize linked with static libarchive: see RESULTS.md),
# lib/ (libzstd.so.1, libgomp.so.1), data/ (tokenizers/, corpus/*.xz, reftok/)
# and this directory's two Python scripts. Output on stdout; $OUT gets the
# trained tokenizer.json.
cd "$(dirname "$0")" || exit 1
export LD_LIBRARY_PATH="$PWD/lib" TN_SHARED="$PWD"
W=$(mktemp -d)
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo)"; date -u
python3 -c "import tiktoken, tokenizers, sentencepiece as s; print('tiktoken', tiktoken.__version__, 'tokenizers', tokenizers.__version__, 'sentencepiece', s.__version__)"
for f in data/corpus/*.xz; do
	python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" "$f" "$W/$(basename "$f" .xz)"
done
C="$W/train-en-00.txt $W/train-code-00.txt"
echo "== tn-bench tokenize"
./bin/tn-bench tokenize $C
echo "== end to end: encode --split-docs to /dev/null"
for t in data/tokenizers/gpt2 data/tokenizers/cl100k_base.tiktoken data/tokenizers/spm8k/tokenizer.model; do
	for j in 1 "$(nproc)"; do
		s=$(date +%s%N); ./bin/tn-tokenize encode -q -j "$j" -t "$t" --split-docs $C >/dev/null
		e=$(date +%s%N); echo "$t -j $j: $(( (e - s) / 1000000 )) ms"
	done
done
./bin/tn-tokenize encode -q -t data/tokenizers/gpt2 --ids --split-docs $C >"$W/tn_gpt2.ids"
echo "== train 32K on both parts, then the same ids in Hugging Face tokenizers?"
s=$(date +%s%N)
./bin/tn-tokenize train -q -o "$W/t32k.json" --vocab-size 32000 --special '<|endoftext|>' --split-docs $C
e=$(date +%s%N); echo "train 32000: $(( (e - s) / 1000000 )) ms"
head -c 5000000 "$W/train-code-00.txt" >"$W/code5m.txt"
for x in data/reftok/mixed.txt data/reftok/cases.txt "$W/code5m.txt"; do
	./bin/tn-tokenize encode -t "$W/t32k.json" --ids "$x" >"$x.whole.ids"
	./bin/tn-tokenize encode -t "$W/t32k.json" --ids --lines "$x" >"$x.lines.ids"
done
python3 tokenize_hf_check.py "$W/t32k.json" data/reftok/mixed.txt data/reftok/cases.txt "$W/code5m.txt"
cp "$W/t32k.json" "$OUT/" 2>/dev/null
echo "== peers"
timeout 200 python3 tokenize_peers.py data --tn-ids "$W/tn_gpt2.ids" $C
