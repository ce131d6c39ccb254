/* tokenizer.h - one face over the tokenizer kinds tn reads: GPT-2
 * (encoder.json + vocab.bpe), tiktoken rank files, Hugging Face
 * tokenizer.json (BPE) and SentencePiece .model (BPE).
 *
 * Every kind is loaded into the same plain form: a BPE engine over raw token
 * bytes plus either a byte-level front end (a PCRE2 pre-tokenizer, each byte
 * its own initial symbol) or a SentencePiece-style one (spaces escaped as
 * U+2581, a dummy prefix, characters as initial symbols, byte fallback).
 * Special tokens are never parsed out of text: "<|endoftext|>" in a document
 * is plain text, as with tiktoken's encode_ordinary and spm. */
#ifndef TN_TOKENIZER_H
#define TN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "bpe.h"
#include "pretokenize.h"

enum tn_tok_kind {
	TN_TOK_AUTO = 0,
	TN_TOK_GPT2,     /* directory with encoder.json + vocab.bpe */
	TN_TOK_TIKTOKEN, /* *.tiktoken rank file */
	TN_TOK_HF,       /* tokenizer.json */
	TN_TOK_SPM,      /* SentencePiece .model */
};

/* One rewrite of the text before it is split (Hugging Face normalizers). */
enum tn_norm_op { TN_NORM_PREPEND, TN_NORM_REPLACE, TN_NORM_NFC, TN_NORM_NFKC,
		  TN_NORM_NFD, TN_NORM_NFKD, TN_NORM_LOWER };
struct tn_norm_step {
	enum tn_norm_op op;
	char *a, *b; /* PREPEND: a; REPLACE: a -> b */
};

/* How SentencePiece-style text becomes words. */
enum tn_spm_split {
	TN_SPLIT_NONE,      /* the text is one word */
	TN_SPLIT_METASPACE, /* a word starts at every U+2581 (HF Metaspace) */
};

struct tn_special {
	char *text;
	uint32_t id;
};

struct tn_tokenizer {
	enum tn_tok_kind kind;
	char *path;
	uint32_t vocab_size;
	struct tn_bpe *bpe;       /* token id -> bytes, merges */
	uint8_t fingerprint[16];  /* xxh3-128 of the file bytes */

	/* byte-level front end (GPT-2, tiktoken, HF ByteLevel) */
	int byte_level;
	uint32_t byte_id[256];
	struct tn_pretok *pretok; /* NULL: the whole text is one pre-token */
	int add_prefix_space;     /* HF ByteLevel add_prefix_space */
	int ignore_merges;        /* HF: a word that is a token is taken whole */

	/* SentencePiece-style front end */
	int add_dummy_prefix;     /* TN_DUMMY_*: U+2581 before a non-empty text */
	int remove_extra_spaces;  /* spm: trim and squeeze runs of ' ' */
	int escape_spaces;        /* ' ' -> U+2581 */
	enum tn_spm_split split;
	struct tn_norm_step *norm; /* HF normalizer steps, in order */
	size_t n_norm;
	int byte_fallback;
	uint32_t byte_piece[256]; /* <0xXX> ids when byte_fallback */
	uint32_t unk_id;          /* TN_BPE_NONE if none */
	char **user_pieces;       /* spm USER_DEFINED: matched whole */
	size_t n_user;
	uint64_t user_first[4];   /* bit set of the user pieces' first bytes */
	int ws_split_safe;        /* no token has U+2581 after other text */
	int spm_normalizer;       /* normalize as SentencePiece does (spm kind) */
	uint32_t *trie;           /* spm precompiled charsmap: darts double array */
	size_t trie_units;
	char *norm_strings;       /* its replacement strings, NUL-terminated */
	size_t norm_len;

	/* decoding: what each id turns back into */
	uint8_t *dec_blob;
	uint64_t *dec_off;
	uint32_t *dec_len;
	uint32_t *dec_flags;      /* TN_DEC_* */

	struct tn_special *specials;
	size_t n_specials;
	uint32_t eot_id;          /* end of text / document, TN_BPE_NONE if none */
};

/* add_dummy_prefix values */
#define TN_DUMMY_ALWAYS 1    /* SentencePiece */
#define TN_DUMMY_IF_ABSENT 2 /* HF Metaspace: unless the text starts with one */
#define TN_DUMMY_DECODE 3    /* a normalizer prepends it; decoding drops it */

#define TN_DEC_BYTE 1u    /* a byte-fallback piece: one raw byte */
#define TN_DEC_CONTROL 2u /* decodes to nothing (spm control pieces) */

const char *tn_tok_kind_name(enum tn_tok_kind k);
/* "gpt2", "tiktoken", "hf", "spm" (or "auto") -> kind; -1 if unknown. */
int tn_tok_kind_parse(const char *s);

/* Load a tokenizer; kind TN_TOK_AUTO detects it from the path and bytes. */
int tn_tokenizer_load(struct tn_tokenizer **t, const char *path, enum tn_tok_kind kind);
void tn_tokenizer_free(struct tn_tokenizer *t);

/* Per-thread scratch: pre-tokenizer state, word cache, buffers. */
struct tn_tok_state;
int tn_tok_state_new(struct tn_tok_state **s, const struct tn_tokenizer *t);
void tn_tok_state_free(struct tn_tok_state *s);

/* Encode text[0..len) as one text, appending ids to out. */
int tn_tokenizer_encode(struct tn_tok_state *s, const uint8_t *text, size_t len,
			struct tn_idvec *out);

/* SentencePiece-style texts in two steps, so that one long text can be
 * spread over threads: normalize the whole text (*norm lives in s until its
 * next use), cut the result where tn_tokenizer_next_cut says (no piece can
 * span such a cut), encode the parts; their ids, concatenated, are the
 * text's. tn_tokenizer_can_cut says whether the tokenizer allows it. */
int tn_tokenizer_can_cut(const struct tn_tokenizer *t);
int tn_tokenizer_normalize(struct tn_tok_state *s, const uint8_t *text, size_t len,
			   const uint8_t **norm, size_t *n);
size_t tn_tokenizer_next_cut(const struct tn_tokenizer *t, const uint8_t *norm, size_t n,
			     size_t from);
int tn_tokenizer_encode_normalized(struct tn_tok_state *s, const uint8_t *norm, size_t n,
				   struct tn_idvec *out);

/* Decoding keeps state across calls (a document may come in parts): */
struct tn_detok {
	const struct tn_tokenizer *t;
	int at_start; /* nothing decoded yet in this document */
};
void tn_detok_begin(struct tn_detok *d, const struct tn_tokenizer *t);
/* Append the bytes of ids to *buf (grown, *cap its size, *len its fill);
 * fails (TN_EDATA) on an id outside the vocabulary. */
int tn_detok_run(struct tn_detok *d, const uint32_t *ids, size_t n,
		 uint8_t **buf, size_t *len, size_t *cap);

/* The id of a token given by its text (special or ordinary), or TN_BPE_NONE. */
uint32_t tn_tokenizer_token_id(const struct tn_tokenizer *t, const char *text);

/* Loaders, one per kind (files gpt2.c, tiktoken.c, hf_tokenizer.c, spm.c);
 * each fills a zeroed tokenizer, the caller adds the fingerprint. */
int tn_gpt2_load(struct tn_tokenizer *t, const char *dir);
int tn_tiktoken_load(struct tn_tokenizer *t, const char *path, const uint8_t *data, size_t len);
int tn_hf_load(struct tn_tokenizer *t, const char *path, const uint8_t *data, size_t len);
int tn_spm_load(struct tn_tokenizer *t, const char *path, const uint8_t *data, size_t len);
/* SentencePiece's normalizer (character map rules, whitespace trimming and
 * squeezing, escaping, dummy prefix, U+FFFD for invalid bytes, user-defined
 * pieces untouched): in[0..n) into *out (grown; *cap its size), *len. */
int tn_spm_normalize(const struct tn_tokenizer *t, const uint8_t *in, size_t n,
		     uint8_t **out, size_t *cap, size_t *len);

/* Helpers the loaders share (tokenizer.c). */
/* Length of the longest user-defined piece that prefixes p[0..n), or 0. */
size_t tn_tokenizer_user_match(const struct tn_tokenizer *t, const uint8_t *p, size_t n);
/* GPT-2's byte <-> printable-code-point table: unicode of byte b. */
uint32_t tn_gpt2_byte_to_cp(uint8_t b);
/* Decode a GPT-2 printable string into raw bytes; -1 if a character is
 * not in the table. out must hold len bytes. */
long tn_gpt2_unprintable(const char *s, size_t len, uint8_t *out);
int tn_tokenizer_add_special(struct tn_tokenizer *t, const char *text, uint32_t id);
/* Fill byte_id[] from the single-byte tokens and mark the tokenizer
 * byte-level; fails if a byte has no token. */
int tn_gpt2_byte_ids(struct tn_tokenizer *t, const char *what);

#endif
