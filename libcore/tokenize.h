/* tokenize.h - the encode pipeline of tn-tokenize: documents from an input,
 * encoded on several threads, written in input order as a token stream or
 * as decimal ids (one document per line).
 *
 * Documents are gathered into batches of bounded size (bytes), a batch is
 * encoded in parallel, then written in order, so output is the same for any
 * thread count and memory stays bounded. A long document is cut into parts
 * that encode independently, so even one huge document uses all threads and
 * gives the same ids: for a byte-level tokenizer where every known pattern
 * ends a pre-token ("x\nY": after a lone LF between two non-space
 * characters); for a SentencePiece-style one, after normalizing it whole,
 * between two words. */
#ifndef TN_TOKENIZE_H
#define TN_TOKENIZE_H

#include <stdint.h>

#include "cli.h"
#include "input.h"
#include "io.h"
#include "tokenizer.h"

struct tn_tokenize_opts {
	int threads;          /* 0: all processors */
	int ids;              /* decimal ids instead of a token stream */
	int eot;              /* the end-of-text token between documents */
	uint64_t batch_bytes; /* text per batch; 0: a default */
};

struct tn_tokenize_stats {
	uint64_t docs, bytes, tokens;
	double seconds;
};

/* Encode every document of in and write to out (the caller commits it). */
int tn_tokenize_run(const struct tn_tokenizer *t, struct tn_input *in,
		    struct tn_out *out, const struct tn_tokenize_opts *o,
		    struct tn_tokenize_stats *st, struct tn_progress *progress);

struct tn_detokenize_opts {
	int ids;        /* input is decimal ids, one document per line */
	int eot;        /* drop the end-of-text token that ends a document */
	int split_docs; /* write "<|endoftext|>\n" between documents */
};

/* Decode token streams (or id lines) from paths ("-": stdin) into text. A
 * stream must have been made with the same tokenizer (fingerprint). */
int tn_detokenize_run(const struct tn_tokenizer *t, char *const *paths, size_t n,
		      struct tn_out *out, const struct tn_detokenize_opts *o,
		      uint64_t *docs);

/* The first place at or after `from` where a long text may be cut for the
 * known byte-level patterns (see above); len if there is none. */
size_t tn_tokenize_next_cut(const uint8_t *p, size_t len, size_t from);

/* Encode documents text[off[i] .. off[i] + len[i]) with n threads and
 * count the tokens (for benchmarks). */
int tn_tokenize_count(const struct tn_tokenizer *t, const uint8_t *text, const size_t *off,
		      const size_t *len, size_t n, int threads, uint64_t *tokens);

/* Encode one text with n threads into ids (what a batch does to one
 * document); for benchmarks and tests. */
int tn_tokenize_text(const struct tn_tokenizer *t, const uint8_t *text, size_t len,
		     int threads, struct tn_idvec *ids);

#endif
