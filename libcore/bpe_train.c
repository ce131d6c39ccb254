/* bpe_train.c - word counting (threads, one table each, summed at the end),
 * the serial merge loop (pair table with the words each pair occurs in, a
 * max-heap of pair counts whose stale entries are refreshed when popped),
 * and the tokenizer.json writer. */
#include "bpe_train.h"
#include "io.h"
#include "pretokenize.h"
#include "tokenize.h"
#include "tokenizer.h"
#include "util.h"

#include <jansson.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define BATCH_BYTES (64u << 20)
#define PART_BYTES (1u << 20)

/* ---- word counts: bytes -> count ---- */

struct wslot {
	uint64_t hash; /* 0 = empty */
	uint64_t off, count;
	uint32_t len;
};

struct wordmap {
	struct wslot *slot;
	size_t mask, used;
	uint8_t *arena;
	size_t alen, acap;
};

static int wm_init(struct wordmap *m)
{
	memset(m, 0, sizeof *m);
	m->mask = (1u << 16) - 1;
	m->slot = tn_calloc(m->mask + 1, sizeof *m->slot);
	return m->slot ? TN_OK : TN_ENOMEM;
}

static void wm_free(struct wordmap *m)
{
	free(m->slot);
	free(m->arena);
}

static int wm_grow(struct wordmap *m)
{
	size_t nmask = m->mask * 2 + 1;
	struct wslot *ns = tn_calloc(nmask + 1, sizeof *ns);
	if (!ns)
		return TN_ENOMEM;
	for (size_t i = 0; i <= m->mask; i++) {
		if (!m->slot[i].hash)
			continue;
		size_t j = m->slot[i].hash & nmask;
		while (ns[j].hash)
			j = (j + 1) & nmask;
		ns[j] = m->slot[i];
	}
	free(m->slot);
	m->slot = ns;
	m->mask = nmask;
	return TN_OK;
}

static int wm_add(struct wordmap *m, const uint8_t *p, size_t len, uint64_t count)
{
	uint64_t h = XXH3_64bits(p, len) | 1;
	size_t i = h & m->mask;
	for (; m->slot[i].hash; i = (i + 1) & m->mask) {
		struct wslot *s = &m->slot[i];
		if (s->hash == h && s->len == len && memcmp(m->arena + s->off, p, len) == 0) {
			s->count += count;
			return TN_OK;
		}
	}
	if (m->alen + len > m->acap) {
		size_t c = (m->alen + len) * 2 + 4096;
		uint8_t *a = tn_realloc(m->arena, c);
		if (!a)
			return TN_ENOMEM;
		m->arena = a;
		m->acap = c;
	}
	memcpy(m->arena + m->alen, p, len);
	m->slot[i] = (struct wslot){ h, m->alen, count, (uint32_t)len };
	m->alen += len;
	if (++m->used * 2 > m->mask)
		return wm_grow(m);
	return TN_OK;
}

static int on_word(void *ctx, const uint8_t *p, size_t n)
{
	return wm_add(ctx, p, n, 1);
}

struct count_job {
	const uint8_t *p;
	size_t len;
};

/* Count the words of every document of the input. */
static int count_words(struct tn_input *in, int threads, struct wordmap *total,
		       struct tn_progress *progress)
{
	struct tn_pretok *pt;
	int rc = tn_pretok_new(&pt, TN_PAT_GPT2, "train");
	if (rc)
		return rc;
	struct wordmap *maps = tn_calloc((size_t)threads, sizeof *maps);
	struct tn_pretok_state **ps = tn_calloc((size_t)threads, sizeof *ps);
	if (!maps || !ps)
		rc = TN_ENOMEM;
	for (int i = 0; i < threads && !rc; i++) {
		rc = wm_init(&maps[i]);
		if (!rc)
			rc = tn_pretok_state_new(&ps[i], pt);
	}
	uint8_t *text = NULL;
	struct count_job *jobs = NULL;
	size_t tcap = 0, jcap = 0;
	uint64_t bytes = 0;
	int eof = 0;
	while (!rc && !eof) {
		size_t tlen = 0, nj = 0;
		/* gather documents, then cut them into parts */
		while (!rc && tlen < BATCH_BYTES) {
			const uint8_t *doc;
			size_t len;
			if ((rc = tn_input_next(in, &doc, &len, &eof)) || eof)
				break;
			if (tlen + len > tcap) {
				tcap = (tlen + len) * 2;
				uint8_t *nt = tn_realloc(text, tcap);
				if (!nt) {
					rc = TN_ENOMEM;
					break;
				}
				text = nt;
			}
			memcpy(text + tlen, doc, len);
			for (size_t at = 0; at < len && !rc;) {
				size_t cut = at + PART_BYTES < len
					? tn_tokenize_next_cut(text + tlen, len, at + PART_BYTES) : len;
				if (nj == jcap) {
					jcap = jcap ? 2 * jcap : 1024;
					struct count_job *nj2 = tn_realloc(jobs, jcap * sizeof *jobs);
					if (!nj2) {
						rc = TN_ENOMEM;
						break;
					}
					jobs = nj2;
				}
				jobs[nj++] = (struct count_job){ (const uint8_t *)(uintptr_t)(tlen + at), cut - at };
				at = cut;
			}
			tlen += len;
		}
		if (rc)
			break;
		int err = 0;
		char msg[256] = "";
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
		for (long j = 0; j < (long)nj; j++) {
			int t = omp_get_thread_num();
			int r = tn_pretok_split(ps[t], text + (uintptr_t)jobs[j].p, jobs[j].len,
						on_word, &maps[t]);
			if (r) {
#pragma omp critical
				if (!err) {
					err = r;
					snprintf(msg, sizeof msg, "%s", tn_errmsg());
				}
			}
		}
		if (err)
			rc = tn_fail(err, "%s", msg);
		bytes += tlen;
		tn_progress_update(progress, "counting words: %.1f MB", (double)bytes / 1e6);
	}
	/* sum the tables: counts add up the same in any order */
	*total = maps ? maps[0] : (struct wordmap){ 0 };
	for (int i = 1; i < threads && maps; i++) {
		for (size_t s = 0; s <= maps[i].mask && !rc && maps[i].slot; s++)
			if (maps[i].slot[s].hash)
				rc = wm_add(total, maps[i].arena + maps[i].slot[s].off,
					    maps[i].slot[s].len, maps[i].slot[s].count);
		wm_free(&maps[i]);
	}
	for (int i = 0; i < threads && ps; i++)
		tn_pretok_state_free(ps[i]);
	free(ps);
	free(maps);
	free(text);
	free(jobs);
	tn_pretok_free(pt);
	return rc;
}

/* ---- the merge loop ---- */

struct word {
	uint64_t count;
	uint32_t start, len; /* symbols in sym[] */
	const uint8_t *bytes;
	uint32_t nbytes;
};

struct pair {
	uint64_t key;   /* left << 32 | right; 0 with count 0 = empty slot */
	int64_t count;
	uint32_t *words, n, cap;
};

struct trainer {
	struct word *w;
	size_t n_words;
	uint32_t *sym;
	uint32_t *seen;       /* per word: the last merge that visited it */
	struct pair *pairs;
	size_t pmask, pused;
	struct { int64_t count; uint64_t key; } *heap;
	size_t hn, hcap;
	uint64_t *touched;    /* pairs (keys) made by the current merge */
	size_t n_touched, touched_cap;
};

static size_t pair_slot(const struct trainer *t, uint64_t key)
{
	size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->pmask;
	while (t->pairs[i].words && t->pairs[i].key != key)
		i = (i + 1) & t->pmask;
	return i;
}

static int pairs_grow(struct trainer *t)
{
	struct trainer old = *t;
	t->pmask = t->pmask ? t->pmask * 2 + 1 : (1u << 20) - 1;
	t->pairs = tn_calloc(t->pmask + 1, sizeof *t->pairs);
	if (!t->pairs)
		return TN_ENOMEM;
	for (size_t i = 0; old.pairs && i <= old.pmask; i++)
		if (old.pairs[i].words)
			t->pairs[pair_slot(t, old.pairs[i].key)] = old.pairs[i];
	free(old.pairs);
	return TN_OK;
}

static int heap_less(const struct trainer *t, size_t a, size_t b)
{
	/* "a comes out before b": larger count, then smaller key */
	return t->heap[a].count > t->heap[b].count ||
	       (t->heap[a].count == t->heap[b].count && t->heap[a].key < t->heap[b].key);
}

static void heap_swap(struct trainer *t, size_t a, size_t b)
{
	__typeof__(*t->heap) x = t->heap[a];
	t->heap[a] = t->heap[b];
	t->heap[b] = x;
}

static int heap_push(struct trainer *t, int64_t count, uint64_t key)
{
	if (t->hn == t->hcap) {
		t->hcap = t->hcap ? 2 * t->hcap : 1 << 16;
		void *h = tn_realloc(t->heap, t->hcap * sizeof *t->heap);
		if (!h)
			return TN_ENOMEM;
		t->heap = h;
	}
	size_t i = t->hn++;
	t->heap[i].count = count;
	t->heap[i].key = key;
	while (i > 0 && heap_less(t, i, (i - 1) / 2)) {
		heap_swap(t, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	return TN_OK;
}

static void heap_pop(struct trainer *t)
{
	t->heap[0] = t->heap[--t->hn];
	for (size_t i = 0;;) {
		size_t c = 2 * i + 1;
		if (c >= t->hn)
			break;
		if (c + 1 < t->hn && heap_less(t, c + 1, c))
			c++;
		if (!heap_less(t, c, i))
			break;
		heap_swap(t, i, c);
		i = c;
	}
}

/* Add delta occurrences of (l, r) in word wi. */
static int pair_add(struct trainer *t, uint32_t l, uint32_t r, int64_t delta, uint32_t wi,
		    int track)
{
	if ((t->pused + 1) * 2 > t->pmask + 1 && pairs_grow(t))
		return TN_ENOMEM;
	uint64_t key = (uint64_t)l << 32 | r;
	struct pair *p = &t->pairs[pair_slot(t, key)];
	if (!p->words) {
		p->key = key;
		p->cap = 4;
		if (!(p->words = tn_malloc(p->cap * sizeof *p->words)))
			return TN_ENOMEM;
		t->pused++;
	}
	p->count += delta;
	if (delta > 0) {
		if (p->n == p->cap) {
			uint32_t *nw = tn_realloc(p->words, (size_t)(p->cap *= 2) * sizeof *nw);
			if (!nw)
				return TN_ENOMEM;
			p->words = nw;
		}
		if (p->n == 0 || p->words[p->n - 1] != wi)
			p->words[p->n++] = wi;
		if (track) {
			if (t->n_touched == t->touched_cap) {
				t->touched_cap = t->touched_cap ? 2 * t->touched_cap : 1024;
				uint64_t *nt = tn_realloc(t->touched, t->touched_cap * sizeof *nt);
				if (!nt)
					return TN_ENOMEM;
				t->touched = nt;
			}
			t->touched[t->n_touched++] = key;
		}
	}
	return TN_OK;
}

static int cmp_word(const void *a, const void *b)
{
	const struct word *x = a, *y = b;
	int c = memcmp(x->bytes, y->bytes, TN_MIN(x->nbytes, y->nbytes));
	return c ? c : (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* Words in byte order (so ids never depend on hash order), then pairs. */
static int trainer_init(struct trainer *t, const struct wordmap *m)
{
	memset(t, 0, sizeof *t);
	size_t nsym = 0;
	t->w = tn_malloc((m->used + 1) * sizeof *t->w);
	if (!t->w)
		return TN_ENOMEM;
	for (size_t i = 0; i <= m->mask; i++) {
		const struct wslot *s = &m->slot[i];
		if (!s->hash)
			continue;
		t->w[t->n_words++] = (struct word){ s->count, 0, 0, m->arena + s->off, s->len };
		nsym += s->len;
	}
	qsort(t->w, t->n_words, sizeof *t->w, cmp_word);
	t->sym = tn_malloc((nsym + 1) * sizeof *t->sym);
	t->seen = tn_calloc(t->n_words + 1, sizeof *t->seen);
	if (!t->sym || !t->seen || pairs_grow(t))
		return TN_ENOMEM;
	size_t at = 0;
	for (size_t i = 0; i < t->n_words; i++) {
		struct word *w = &t->w[i];
		w->start = (uint32_t)at;
		w->len = w->nbytes;
		for (uint32_t k = 0; k < w->nbytes; k++)
			t->sym[at++] = w->bytes[k];
		for (uint32_t k = 0; k + 1 < w->len; k++) {
			int rc = pair_add(t, t->sym[w->start + k], t->sym[w->start + k + 1],
					  (int64_t)w->count, (uint32_t)i, 0);
			if (rc)
				return rc;
		}
	}
	for (size_t i = 0; i <= t->pmask; i++)
		if (t->pairs[i].words && t->pairs[i].count > 0 &&
		    heap_push(t, t->pairs[i].count, t->pairs[i].key))
			return TN_ENOMEM;
	return TN_OK;
}

static void trainer_free(struct trainer *t)
{
	for (size_t i = 0; t->pairs && i <= t->pmask; i++)
		free(t->pairs[i].words);
	free(t->pairs);
	free(t->w);
	free(t->sym);
	free(t->seen);
	free(t->heap);
	free(t->touched);
}

/* Replace every (a, b) in word wi by m, keeping the pair counts exact. */
static int merge_word(struct trainer *t, uint32_t wi, uint32_t a, uint32_t b, uint32_t m)
{
	struct word *w = &t->w[wi];
	uint32_t *s = t->sym + w->start;
	int64_t f = (int64_t)w->count;
	int rc = TN_OK;
	for (uint32_t i = 0; i + 1 < w->len && !rc; i++) {
		if (s[i] != a || s[i + 1] != b)
			continue;
		if (i > 0)
			rc = pair_add(t, s[i - 1], a, -f, wi, 0);
		if (!rc && i + 2 < w->len)
			rc = pair_add(t, b, s[i + 2], -f, wi, 0);
		if (!rc)
			rc = pair_add(t, a, b, -f, wi, 0);
		s[i] = m;
		memmove(s + i + 1, s + i + 2, (w->len - i - 2) * sizeof *s);
		w->len--;
		if (!rc && i > 0)
			rc = pair_add(t, s[i - 1], m, f, wi, 1);
		if (!rc && i + 1 < w->len)
			rc = pair_add(t, m, s[i + 1], f, wi, 1);
	}
	return rc;
}

/* The most frequent pair, or 0 when none is left. */
static int best_pair(struct trainer *t, uint64_t *key, int64_t *count)
{
	while (t->hn > 0) {
		uint64_t k = t->heap[0].key;
		int64_t c = t->heap[0].count;
		struct pair *p = &t->pairs[pair_slot(t, k)];
		heap_pop(t);
		if (p->count == c && c > 0) {
			*key = k;
			*count = c;
			return 1;
		}
		if (p->count > 0 && p->count < c && heap_push(t, p->count, k))
			return -1;
	}
	return 0;
}

static int do_merge(struct trainer *t, uint64_t key, uint32_t m)
{
	uint32_t a = (uint32_t)(key >> 32), b = (uint32_t)key;
	struct pair *p = &t->pairs[pair_slot(t, key)];
	/* the list may grow while we walk it (a == b): copy it first */
	uint32_t n = p->n, *list = tn_malloc(((size_t)n + 1) * sizeof *list);
	if (!list)
		return TN_ENOMEM;
	memcpy(list, p->words, (size_t)n * sizeof *list);
	p->n = 0;
	t->n_touched = 0;
	int rc = TN_OK;
	for (uint32_t i = 0; i < n && !rc; i++) {
		if (t->seen[list[i]] == m)
			continue;
		t->seen[list[i]] = m;
		rc = merge_word(t, list[i], a, b, m);
	}
	free(list);
	for (size_t i = 0; i < t->n_touched && !rc; i++) {
		struct pair *q = &t->pairs[pair_slot(t, t->touched[i])];
		if (q->count > 0)
			rc = heap_push(t, q->count, q->key);
	}
	return rc;
}

/* ---- output ---- */

/* Token bytes in GPT-2's printable alphabet, as a JSON string value. */
static json_t *printable(const uint8_t *p, size_t n)
{
	char *s = malloc(2 * n + 1), *o = s;
	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint32_t cp = tn_gpt2_byte_to_cp(p[i]);
		if (cp < 0x80) {
			*o++ = (char)cp;
		} else {
			*o++ = (char)(0xc0 | cp >> 6);
			*o++ = (char)(0x80 | (cp & 0x3f));
		}
	}
	json_t *v = json_stringn(s, (size_t)(o - s));
	free(s);
	return v;
}

static json_t *byte_level(int prefix_space)
{
	return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space",
			 prefix_space, "trim_offsets", 1, "use_regex", 1);
}

static int write_json(const char *path, uint8_t **tok, uint32_t *tlen, uint32_t n_tok,
		      const uint32_t (*merges)[2], uint32_t n_merges,
		      const struct tn_train_opts *o)
{
	json_t *vocab = json_object(), *mlist = json_array(), *added = json_array();
	int rc = vocab && mlist && added ? TN_OK : TN_ENOMEM;
	for (uint32_t id = 0; id < n_tok && !rc; id++) {
		json_t *k = printable(tok[id], tlen[id]);
		if (!k || json_object_setn_new(vocab, json_string_value(k), json_string_length(k),
					       json_integer(id)))
			rc = TN_ENOMEM;
		json_decref(k);
	}
	for (uint32_t i = 0; i < n_merges && !rc; i++) {
		json_t *a = printable(tok[merges[i][0]], tlen[merges[i][0]]);
		json_t *b = printable(tok[merges[i][1]], tlen[merges[i][1]]);
		if (!a || !b || json_array_append_new(mlist, json_pack("[OO]", a, b)))
			rc = TN_ENOMEM;
		json_decref(a);
		json_decref(b);
	}
	for (size_t i = 0; i < o->n_specials && !rc; i++) {
		json_int_t id = n_tok + (json_int_t)i;
		json_object_set_new(vocab, o->specials[i], json_integer(id));
		json_array_append_new(added, json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}",
			"id", id, "content", o->specials[i], "single_word", 0, "lstrip", 0,
			"rstrip", 0, "normalized", 0, "special", 1));
	}
	json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}",
		"type", "BPE", "dropout", "unk_token", "continuing_subword_prefix",
		"end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0,
		"vocab", vocab, "merges", mlist);
	json_t *root = json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:o, s:o, s:o}",
		"version", "1.0", "truncation", "padding", "added_tokens", added,
		"normalizer", "pre_tokenizer", byte_level(0), "post_processor", byte_level(1),
		"decoder", byte_level(1), "model", model);
	char *text = root && !rc ? json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
	if (!text && !rc)
		rc = tn_fail(TN_ENOMEM, "out of memory writing %s", path);
	if (!rc)
		rc = tn_write_file_atomic(path, text, strlen(text));
	free(text);
	json_decref(root);
	return rc;
}

int tn_bpe_train(struct tn_input *in, const struct tn_train_opts *o,
		 const char *out_path, struct tn_progress *progress)
{
	int threads = o->threads > 0 ? o->threads : omp_get_num_procs();
	struct wordmap words;
	int rc = count_words(in, threads, &words, progress);
	struct trainer t;
	memset(&t, 0, sizeof t);
	if (!rc)
		rc = trainer_init(&t, &words);
	uint32_t target = o->vocab_size - (uint32_t)o->n_specials, n_tok = 256, n_merges = 0;
	uint8_t **tok = tn_calloc(target, sizeof *tok);
	uint32_t *tlen = tn_calloc(target, sizeof *tlen);
	uint32_t (*merges)[2] = tn_malloc((size_t)target * sizeof *merges);
	if (!tok || !tlen || !merges)
		rc = TN_ENOMEM;
	for (uint32_t b = 0; b < 256 && !rc; b++) {
		if (!(tok[b] = tn_malloc(1)))
			rc = TN_ENOMEM;
		else
			tok[b][0] = (uint8_t)b;
		tlen[b] = 1;
	}
	while (!rc && n_tok < target) {
		uint64_t key;
		int64_t count;
		int found = best_pair(&t, &key, &count);
		if (found < 0)
			rc = TN_ENOMEM;
		if (found <= 0 || (uint64_t)count < o->min_frequency)
			break;
		uint32_t a = (uint32_t)(key >> 32), b = (uint32_t)key;
		tlen[n_tok] = tlen[a] + tlen[b];
		if (!(tok[n_tok] = tn_malloc(tlen[n_tok]))) {
			rc = TN_ENOMEM;
			break;
		}
		memcpy(tok[n_tok], tok[a], tlen[a]);
		memcpy(tok[n_tok] + tlen[a], tok[b], tlen[b]);
		merges[n_merges][0] = a;
		merges[n_merges++][1] = b;
		rc = do_merge(&t, key, n_tok++);
		tn_progress_update(progress, "merges: %u of %u", n_merges, target - 256);
	}
	tn_progress_done(progress);
	if (!rc)
		rc = write_json(out_path, tok, tlen, n_tok, (const uint32_t (*)[2])merges, n_merges, o);
	for (uint32_t i = 0; tok && i < target; i++)
		free(tok[i]);
	free(tok);
	free(tlen);
	free(merges);
	trainer_free(&t);
	wm_free(&words);
	return rc;
}
