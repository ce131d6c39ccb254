/* tokenize.c - batches of documents, cut into parts, encoded with OpenMP
 * (one tn_tok_state per thread, dynamic scheduling), written in order.
 * Errors inside the parallel loop are kept per part and reported after it,
 * the first in input order. */
#include "tokenize.h"
#include "ids.h"
#include "source.h"
#include "stream.h"
#include "util.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define PART_BYTES (256u << 10)   /* target size of a part of a long document */
#define BATCH_PER_THREAD (16u << 20) /* text bytes per batch and thread */
#define BATCH_MAX (256u << 20)        /* whatever the thread count */

struct part {
	size_t doc, off, len;
	int normalized; /* off is in batch.norm, already normalized */
	struct tn_idvec ids;
	int rc;
	char err[256];
};

struct batch {
	uint8_t *text;
	size_t len, cap;
	size_t *doc_off, *doc_len;
	size_t n_docs, docs_cap;
	struct part *parts;
	size_t n_parts, parts_cap;
	uint8_t *norm; /* normalized long SentencePiece-style documents */
	size_t norm_len, norm_cap;
};

/* Append n bytes to a growing buffer. */
static int append_bytes(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *p, size_t n)
{
	if (*len + n > *cap) {
		size_t c = (*len + n) * 2;
		uint8_t *nb = tn_realloc(*buf, c);
		if (!nb)
			return TN_ENOMEM;
		*buf = nb;
		*cap = c;
	}
	if (n > 0)
		memcpy(*buf + *len, p, n);
	*len += n;
	return TN_OK;
}

static int batch_add_doc(struct batch *b, const uint8_t *p, size_t n)
{
	size_t at = b->len;
	if (append_bytes(&b->text, &b->len, &b->cap, p, n))
		return TN_ENOMEM;
	if (b->n_docs == b->docs_cap) {
		size_t c = b->docs_cap ? 2 * b->docs_cap : 256;
		size_t *o = tn_realloc(b->doc_off, c * sizeof *o);
		if (!o)
			return TN_ENOMEM;
		b->doc_off = o;
		size_t *l = tn_realloc(b->doc_len, c * sizeof *l);
		if (!l)
			return TN_ENOMEM;
		b->doc_len = l;
		b->docs_cap = c;
	}
	b->doc_off[b->n_docs] = at;
	b->doc_len[b->n_docs++] = n;
	return TN_OK;
}

static int batch_add_part(struct batch *b, size_t doc, size_t off, size_t len, int normalized)
{
	if (b->n_parts == b->parts_cap) {
		size_t c = b->parts_cap ? 2 * b->parts_cap : 256;
		struct part *p = tn_realloc(b->parts, c * sizeof *p);
		if (!p)
			return TN_ENOMEM;
		memset(p + b->parts_cap, 0, (c - b->parts_cap) * sizeof *p);
		b->parts = p;
		b->parts_cap = c;
	}
	struct part *p = &b->parts[b->n_parts++];
	p->doc = doc;
	p->off = off;
	p->len = len;
	p->normalized = normalized;
	p->ids.n = 0;
	p->rc = 0;
	return TN_OK;
}

/* The first safe cut at or after `from`: just after the LF of "x\nY" with
 * x and Y printable ASCII non-space; len if none. */
size_t tn_tokenize_next_cut(const uint8_t *p, size_t len, size_t from)
{
	for (size_t i = from; i + 1 < len; i++) {
		const uint8_t *q = memchr(p + i, '\n', len - i - 1);
		if (!q)
			return len;
		i = (size_t)(q - p);
		/* not '/' after the LF: o200k lets punctuation runs take it */
		if (i > 0 && i + 1 < len && p[i - 1] > ' ' && p[i - 1] < 0x7f &&
		    p[i + 1] > ' ' && p[i + 1] < 0x7f && p[i + 1] != '/')
			return i + 1;
	}
	return len;
}

/* Only the known patterns are known to end a pre-token at a cut, and
 * nothing may rewrite the text first (a prefix space, a normalizer). */
static int can_cut(const struct tn_tokenizer *t)
{
	if (!t->byte_level || !t->pretok || t->add_prefix_space || t->n_norm)
		return 0;
	const char *pat = tn_pretok_pattern(t->pretok);
	return !strcmp(pat, TN_PAT_GPT2) || !strcmp(pat, TN_PAT_CL100K) || !strcmp(pat, TN_PAT_O200K);
}

/* A long SentencePiece-style document: normalized whole (one thread),
 * then cut between words. */
static int add_normalized_parts(struct batch *b, struct tn_tok_state *s,
				const struct tn_tokenizer *t, size_t doc)
{
	const uint8_t *norm;
	size_t n;
	int rc = tn_tokenizer_normalize(s, b->text + b->doc_off[doc], b->doc_len[doc], &norm, &n);
	if (rc)
		return rc;
	size_t base = b->norm_len;
	if (append_bytes(&b->norm, &b->norm_len, &b->norm_cap, norm, n))
		return TN_ENOMEM;
	for (size_t at = 0; at < n && !rc;) {
		size_t cut = at + PART_BYTES < n ? tn_tokenizer_next_cut(t, b->norm + base, n,
									 at + PART_BYTES) : n;
		rc = batch_add_part(b, doc, base + at, cut - at, 1);
		at = cut;
	}
	return rc;
}

static int add_doc_parts(struct batch *b, const struct tn_tokenizer *t, size_t doc,
			 struct tn_tok_state *s)
{
	const uint8_t *p = b->text + b->doc_off[doc];
	size_t len = b->doc_len[doc], at = 0;
	if (len < 2 * PART_BYTES || (!can_cut(t) && !tn_tokenizer_can_cut(t)))
		return batch_add_part(b, doc, 0, len, 0);
	if (!t->byte_level)
		return add_normalized_parts(b, s, t, doc);
	while (at < len) {
		size_t cut = at + PART_BYTES < len ? tn_tokenize_next_cut(p, len, at + PART_BYTES) : len;
		int rc = batch_add_part(b, doc, at, cut - at, 0);
		if (rc)
			return rc;
		at = cut;
	}
	return TN_OK;
}

static void batch_free(struct batch *b)
{
	free(b->text);
	free(b->doc_off);
	free(b->doc_len);
	for (size_t i = 0; i < b->parts_cap; i++)
		tn_idvec_free(&b->parts[i].ids);
	free(b->parts);
	free(b->norm);
}

struct states {
	struct tn_tok_state **s;
	int n;
};

static int states_new(struct states *st, const struct tn_tokenizer *t, int n)
{
	st->n = n;
	st->s = tn_calloc((size_t)n, sizeof *st->s);
	if (!st->s)
		return TN_ENOMEM;
	for (int i = 0; i < n; i++) {
		int rc = tn_tok_state_new(&st->s[i], t);
		if (rc)
			return rc;
	}
	return TN_OK;
}

static void states_free(struct states *st)
{
	for (int i = 0; st->s && i < st->n; i++)
		tn_tok_state_free(st->s[i]);
	free(st->s);
}

static int encode_parts(struct batch *b, struct states *st)
{
	long n = (long)b->n_parts;
#pragma omp parallel for schedule(dynamic, 1) num_threads(st->n)
	for (long i = 0; i < n; i++) {
		struct part *p = &b->parts[i];
		struct tn_tok_state *s = st->s[omp_get_thread_num()];
		p->rc = p->normalized
			? tn_tokenizer_encode_normalized(s, b->norm + p->off, p->len, &p->ids)
			: tn_tokenizer_encode(s, b->text + b->doc_off[p->doc] + p->off, p->len, &p->ids);
		if (p->rc)
			snprintf(p->err, sizeof p->err, "%s", tn_errmsg());
	}
	for (size_t i = 0; i < b->n_parts; i++)
		if (b->parts[i].rc)
			return tn_fail(b->parts[i].rc, "%s", b->parts[i].err);
	return TN_OK;
}

/* Where the encoded documents go: a stream or lines of decimal ids. */
struct sink {
	struct tn_out *out;
	struct tn_stream_writer *w;
	char *line;
	size_t line_cap;
	int pending; /* a document was written and not yet ended */
	uint32_t eot;
};

static int sink_ids(struct sink *k, const uint32_t *v, size_t n, int first)
{
	if (n == 0)
		return TN_OK;
	if (k->line_cap < 11 * n + 2) {
		free(k->line);
		k->line_cap = 11 * n + 2;
		if (!(k->line = tn_malloc(k->line_cap)))
			return TN_ENOMEM;
	}
	size_t m = 0;
	if (!first)
		k->line[m++] = ' ';
	m += tn_ids_format(v, n, k->line + m);
	return tn_out_write(k->out, k->line, m);
}

/* End the pending document; with an end-of-text token when another follows. */
static int sink_end(struct sink *k, int another)
{
	if (!k->pending)
		return TN_OK;
	k->pending = 0;
	int rc = TN_OK;
	if (another && k->eot != TN_BPE_NONE)
		rc = k->w ? tn_stream_append(k->w, &k->eot, 1) : sink_ids(k, &k->eot, 1, 0);
	if (rc)
		return rc;
	return k->w ? tn_stream_end_doc(k->w) : tn_out_write(k->out, "\n", 1);
}

static int write_batch(struct batch *b, struct sink *k, struct tn_tokenize_stats *st)
{
	size_t i = 0;
	for (size_t d = 0; d < b->n_docs; d++) {
		int rc = sink_end(k, 1);
		int first = 1;
		for (; !rc && i < b->n_parts && b->parts[i].doc == d; i++) {
			const struct tn_idvec *v = &b->parts[i].ids;
			rc = k->w ? tn_stream_append(k->w, v->v, v->n) : sink_ids(k, v->v, v->n, first);
			first = first && v->n == 0;
			st->tokens += v->n;
		}
		if (rc)
			return rc;
		k->pending = 1;
		st->docs++;
		st->bytes += b->doc_len[d];
	}
	return TN_OK;
}

static int run(const struct tn_tokenizer *t, struct tn_input *in, struct sink *k,
	       const struct tn_tokenize_opts *o, struct states *sts,
	       struct tn_tokenize_stats *st, struct tn_progress *progress)
{
	uint64_t limit = o->batch_bytes ? o->batch_bytes
					: TN_MIN((uint64_t)BATCH_PER_THREAD * (uint64_t)sts->n, BATCH_MAX);
	struct batch b = { 0 };
	int rc = TN_OK, eof = 0;
	while (!rc && !eof) {
		b.len = b.n_docs = b.n_parts = b.norm_len = 0;
		while (!rc && b.len < limit) {
			const uint8_t *doc;
			size_t len;
			if ((rc = tn_input_next(in, &doc, &len, &eof)) || eof)
				break;
			rc = batch_add_doc(&b, doc, len);
		}
		for (size_t d = 0; d < b.n_docs && !rc; d++)
			rc = add_doc_parts(&b, t, d, sts->s[0]);
		if (!rc)
			rc = encode_parts(&b, sts);
		if (!rc)
			rc = write_batch(&b, k, st);
		tn_progress_update(progress, "%llu documents, %.1f MB, %llu tokens",
				   (unsigned long long)st->docs, (double)st->bytes / 1e6,
				   (unsigned long long)st->tokens);
	}
	batch_free(&b);
	if (!rc)
		rc = sink_end(k, 0);
	return rc;
}

static int thread_count(int asked)
{
	return asked > 0 ? asked : omp_get_num_procs();
}

int tn_tokenize_run(const struct tn_tokenizer *t, struct tn_input *in,
		    struct tn_out *out, const struct tn_tokenize_opts *o,
		    struct tn_tokenize_stats *st, struct tn_progress *progress)
{
	memset(st, 0, sizeof *st);
	double t0 = tn_now();
	if (o->eot && t->eot_id == TN_BPE_NONE)
		return tn_fail(TN_EUSAGE, "%s: the tokenizer has no end-of-text token for --eot", t->path);
	struct sink k = { out, NULL, NULL, 0, 0, o->eot ? t->eot_id : TN_BPE_NONE };
	struct states sts = { 0 };
	int rc = states_new(&sts, t, thread_count(o->threads));
	if (!rc && !o->ids) {
		struct tn_stream_info info = { tn_width_for_vocab(t->vocab_size), t->vocab_size, { 0 } };
		memcpy(info.fingerprint, t->fingerprint, 16);
		rc = tn_stream_writer_new(&k.w, out, &info);
	}
	if (!rc)
		rc = run(t, in, &k, o, &sts, st, progress);
	if (!rc && k.w)
		rc = tn_stream_finish(k.w);
	tn_stream_writer_free(k.w);
	states_free(&sts);
	free(k.line);
	st->seconds = tn_now() - t0;
	tn_progress_done(progress);
	return rc;
}


static int check_stream(const struct tn_tokenizer *t, const struct tn_stream_info *info)
{
	static const uint8_t zero[16];
	if (info->vocab_size > t->vocab_size)
		return tn_fail(TN_EDATA, "the input's vocabulary (%u) is larger than %s's (%u)",
			       info->vocab_size, t->path, t->vocab_size);
	if (memcmp(info->fingerprint, zero, 16) && memcmp(info->fingerprint, t->fingerprint, 16)) {
		char a[33], b[33];
		tn_fingerprint_hex(info->fingerprint, a);
		tn_fingerprint_hex(t->fingerprint, b);
		return tn_fail(TN_EDATA, "the input was made by another tokenizer (fingerprint %s, "
			       "%s has %s)", a, t->path, b);
	}
	return TN_OK;
}

struct detok_run {
	const struct tn_tokenizer *t;
	const struct tn_detokenize_opts *o;
	struct tn_out *out;
	struct tn_detok d;
	uint8_t *text;
	size_t len, cap;
	int held;      /* an end-of-text token held back: it may end the document */
	int in_doc;
	uint64_t docs;
};

static int detok_chunk(struct detok_run *r, const uint32_t *v, size_t n, int doc_end)
{
	uint32_t eot = r->o->eot ? r->t->eot_id : TN_BPE_NONE;
	r->len = 0;
	if (!r->in_doc && (n > 0 || doc_end)) {
		if (r->docs > 0 && r->o->split_docs && tn_out_write(r->out, "<|endoftext|>\n", 14))
			return TN_EIO;
		tn_detok_begin(&r->d, r->t);
		r->in_doc = 1;
	}
	int rc = TN_OK;
	if (r->held && n > 0)
		rc = tn_detok_run(&r->d, &eot, 1, &r->text, &r->len, &r->cap);
	if (n > 0)
		r->held = 0;
	if (n > 0 && v[n - 1] == eot) {
		r->held = 1;
		n--;
	}
	if (!rc)
		rc = tn_detok_run(&r->d, v, n, &r->text, &r->len, &r->cap);
	if (!rc)
		rc = tn_out_write(r->out, r->text, r->len);
	if (doc_end) {
		r->held = r->in_doc = 0;
		r->docs++;
	}
	return rc;
}

int tn_detokenize_run(const struct tn_tokenizer *t, char *const *paths, size_t n,
		      struct tn_out *out, const struct tn_detokenize_opts *o,
		      uint64_t *docs)
{
	struct tn_source_opts so = { o->ids ? TN_SOURCE_IDS : TN_SOURCE_STREAM, t->vocab_size, -1 };
	struct tn_source *src;
	char *dash = "-";
	int rc = tn_source_open(&src, n ? paths : &dash, n ? n : 1, &so);
	if (rc)
		return rc;
	if (!o->ids)
		rc = check_stream(t, tn_source_info(src));
	struct detok_run r = { .t = t, .o = o, .out = out };
	uint32_t *buf = tn_malloc((1u << 16) * sizeof *buf);
	if (!buf)
		rc = TN_ENOMEM;
	while (!rc) {
		size_t got;
		int doc_end, eos;
		rc = tn_source_read(src, buf, 1u << 16, &got, &doc_end, &eos);
		if (rc || eos)
			break;
		rc = detok_chunk(&r, buf, got, doc_end);
	}
	*docs = r.docs;
	free(buf);
	free(r.text);
	tn_source_free(src);
	return rc;
}

/* Encode documents given in memory into a batch's parts (no output). */
static int encode_in_memory(const struct tn_tokenizer *t, const uint8_t *text,
			    const size_t *off, const size_t *len, size_t n, int threads,
			    struct batch *b)
{
	struct states sts = { 0 };
	int rc = states_new(&sts, t, thread_count(threads));
	for (size_t d = 0; d < n && !rc; d++)
		rc = batch_add_doc(b, text + off[d], len[d]);
	for (size_t d = 0; d < n && !rc; d++)
		rc = add_doc_parts(b, t, d, sts.s[0]);
	if (!rc)
		rc = encode_parts(b, &sts);
	states_free(&sts);
	return rc;
}

int tn_tokenize_count(const struct tn_tokenizer *t, const uint8_t *text, const size_t *off,
		      const size_t *len, size_t n, int threads, uint64_t *tokens)
{
	struct batch b = { 0 };
	int rc = encode_in_memory(t, text, off, len, n, threads, &b);
	*tokens = 0;
	for (size_t i = 0; i < b.n_parts; i++)
		*tokens += b.parts[i].ids.n;
	batch_free(&b);
	return rc;
}

int tn_tokenize_text(const struct tn_tokenizer *t, const uint8_t *text, size_t len,
		     int threads, struct tn_idvec *ids)
{
	struct batch b = { 0 };
	size_t off = 0;
	int rc = encode_in_memory(t, text, &off, &len, 1, threads, &b);
	for (size_t i = 0; i < b.n_parts && !rc; i++)
		rc = tn_idvec_append(ids, b.parts[i].ids.v, b.parts[i].ids.n);
	batch_free(&b);
	return rc;
}
