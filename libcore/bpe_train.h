/* bpe_train.h - train a byte-level BPE (GPT-2 pre-tokenization) and write it
 * as a Hugging Face tokenizer.json.
 *
 * Words (pre-tokens) are counted on all threads; the merge loop is serial
 * and keeps pair counts up to date incrementally, so it costs in proportion
 * to the words a merge touches, not to the corpus. Ties between pairs of
 * equal count go to the smaller (left id, right id), so the result depends
 * only on the text, never on thread count or timing. Ids: bytes 0-255 are
 * ids 0-255, merges follow in order, special tokens come last. */
#ifndef TN_BPE_TRAIN_H
#define TN_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "input.h"

struct tn_train_opts {
	uint32_t vocab_size;     /* total, special tokens included */
	const char *const *specials;
	size_t n_specials;
	int threads;             /* 0: all processors */
	uint64_t min_frequency;  /* stop when the best pair is rarer */
};

int tn_bpe_train(struct tn_input *in, const struct tn_train_opts *o,
		 const char *out_path, struct tn_progress *progress);

#endif
