/* pretokenize.h - split text into pre-tokens with a PCRE2 pattern.
 *
 * Patterns are compiled with UTF, UCP (Unicode properties for \p{..}) and
 * MATCH_INVALID_UTF, and run through the JIT. Invalid UTF-8 never matches
 * anything; text between two matches (with the known patterns: only a run
 * of invalid UTF-8) becomes a pre-token of its own, so byte-level
 * tokenizers still encode any input and decode it back exactly. In the named patterns, \s and \S stand for
 * the Unicode White_Space set, as in the references (Python `regex`, Rust
 * `regex`), not PCRE2's own \s. */
#ifndef TN_PRETOKENIZE_H
#define TN_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

/* The patterns of the known encodings (GPT-2 = r50k = p50k). */
extern const char TN_PAT_GPT2[];
extern const char TN_PAT_CL100K[];
extern const char TN_PAT_O200K[];

struct tn_pretok;
/* Compile a pattern; `what` names it in messages (a file, a tokenizer). */
int tn_pretok_new(struct tn_pretok **p, const char *pattern, const char *what);
void tn_pretok_free(struct tn_pretok *p);
const char *tn_pretok_pattern(const struct tn_pretok *p);

/* Per-thread matching state. */
struct tn_pretok_state;
int tn_pretok_state_new(struct tn_pretok_state **s, const struct tn_pretok *p);
void tn_pretok_state_free(struct tn_pretok_state *s);

/* Call fn on each pre-token of text[0..len), in order; stops at the first
 * non-zero return of fn and returns it. */
typedef int (*tn_pretok_fn)(void *ctx, const uint8_t *piece, size_t len);
int tn_pretok_split(struct tn_pretok_state *s, const uint8_t *text, size_t len,
		    tn_pretok_fn fn, void *ctx);

#endif
