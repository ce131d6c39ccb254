/* torch_pickle.c - the strict reader of torch.save files (see
 * torch_pickle.h). Values live in one list freed at the end; the memo and
 * the stack hold pointers into it, so a shared object (a tied tensor's
 * storage) is one value however often it is referenced. */
#include "torch_pickle.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct tn_torch_blob {
	char *name;
	uint8_t *data;
	size_t len;
};

enum vkind { V_NONE, V_BOOL, V_INT, V_STR, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE,
	     V_TENSOR, V_MARK };
enum gkind { G_ODICT, G_REBUILD, G_STORAGE };

struct val {
	enum vkind k;
	int64_t i;
	char *s;
	struct val **a; /* tuple, list items; dict keys and values alternating */
	size_t n, cap;
	enum gkind g;
	enum tn_dtype dt;                /* storage class / storage */
	const struct tn_torch_blob *blob; /* storage */
	struct tn_torch_tensor tt;       /* tensor */
};

struct up {
	struct tn_torch *t;
	const char *prefix; /* "archive/" */
	size_t plen;
	const uint8_t *p;
	size_t n, at, op_at;
	struct val **stack, **memo, **all;
	size_t sp, scap, nmemo, nall, acap;
};

#define MAX_ITEMS (1u << 24)

static int bad(struct up *u, const char *what)
{
	return tn_fail(TN_EDATA, "%s: data.pkl byte %zu: %s", u->t->path, u->op_at, what);
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return TN_OK;
	size_t c = *cap ? *cap * 2 : 16;
	while (c < need)
		c *= 2;
	void *q = tn_realloc(*p, c * size);
	if (!q)
		return TN_ENOMEM;
	*p = q;
	*cap = c;
	return TN_OK;
}

static struct val *newv(struct up *u, enum vkind k)
{
	struct val *v = tn_calloc(1, sizeof(*v));
	if (!v || grow((void **)&u->all, &u->acap, u->nall + 1, sizeof(*u->all))) {
		free(v);
		return NULL;
	}
	v->k = k;
	u->all[u->nall++] = v;
	return v;
}

static int push(struct up *u, struct val *v)
{
	if (!v)
		return TN_ENOMEM;
	if (u->sp >= MAX_ITEMS)
		return bad(u, "stack too deep");
	int rc = grow((void **)&u->stack, &u->scap, u->sp + 1, sizeof(*u->stack));
	if (!rc)
		u->stack[u->sp++] = v;
	return rc;
}

static struct val *pop(struct up *u)
{
	return u->sp && u->stack[u->sp - 1]->k != V_MARK ? u->stack[--u->sp] : NULL;
}

static int add_item(struct val *c, struct val *x)
{
	int rc = grow((void **)&c->a, &c->cap, c->n + 1, sizeof(*c->a));
	if (!rc)
		c->a[c->n++] = x;
	return rc;
}

/* Items above the topmost mark into a new container of kind k (the mark popped). */
static int collect(struct up *u, enum vkind k, struct val **out)
{
	size_t m = u->sp;
	while (m && u->stack[m - 1]->k != V_MARK)
		m--;
	if (!m)
		return bad(u, "no mark on the stack");
	struct val *c = newv(u, k);
	if (!c)
		return TN_ENOMEM;
	for (size_t i = m; i < u->sp; i++)
		if (add_item(c, u->stack[i]))
			return TN_ENOMEM;
	u->sp = m - 1;
	*out = c;
	return TN_OK;
}

static int need(struct up *u, size_t n)
{
	return u->n - u->at >= n ? TN_OK : bad(u, "truncated");
}

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t x = 0;
	for (int i = n - 1; i >= 0; i--)
		x = x << 8 | p[i];
	return x;
}

static int str(struct up *u, size_t len)
{
	int rc = need(u, len);
	struct val *v = rc ? NULL : newv(u, V_STR);
	if (rc || !v)
		return rc ? rc : TN_ENOMEM;
	if (!(v->s = tn_malloc(len + 1)))
		return TN_ENOMEM;
	memcpy(v->s, u->p + u->at, len);
	v->s[len] = 0;
	u->at += len;
	return push(u, v);
}

static int integer(struct up *u, int64_t x)
{
	struct val *v = newv(u, V_INT);
	if (v)
		v->i = x;
	return push(u, v);
}

static const struct {
	const char *name;
	enum tn_dtype dt;
} storages[] = {
	{"FloatStorage", TN_F32}, {"BFloat16Storage", TN_BF16}, {"HalfStorage", TN_F16},
	{"DoubleStorage", TN_F64}, {"IntStorage", TN_I32},	{"LongStorage", TN_I64},
};

/* The only globals there are: anything else stops the read. */
static int global(struct up *u, const char *mod, const char *name)
{
	struct val *v = newv(u, V_GLOBAL);
	if (!v)
		return TN_ENOMEM;
	if (!strcmp(mod, "collections") && !strcmp(name, "OrderedDict"))
		v->g = G_ODICT;
	else if (!strcmp(mod, "torch._utils") && !strcmp(name, "_rebuild_tensor_v2"))
		v->g = G_REBUILD;
	else {
		size_t i = 0;
		while (i < TN_ARRAY_LEN(storages) &&
		       (strcmp(mod, "torch") || strcmp(name, storages[i].name)))
			i++;
		if (i == TN_ARRAY_LEN(storages))
			return tn_fail(TN_EDATA, "%s: data.pkl byte %zu: global %s.%s is not one a "
				       "tensor state dict uses (refused; nothing is executed)",
				       u->t->path, u->op_at, mod, name);
		v->g = G_STORAGE;
		v->dt = storages[i].dt;
	}
	return push(u, v);
}

static int text_line(struct up *u, char *buf, size_t cap)
{
	const uint8_t *nl = memchr(u->p + u->at, '\n', u->n - u->at);
	size_t len = nl ? (size_t)(nl - (u->p + u->at)) : 0;
	if (!nl || len >= cap)
		return bad(u, "bad GLOBAL line");
	memcpy(buf, u->p + u->at, len);
	buf[len] = 0;
	u->at += len + 1;
	return TN_OK;
}

/* ('storage', class, key, location, numel) -> the storage's bytes. */
static int persid(struct up *u)
{
	struct val *t = pop(u);
	if (!t || t->k != V_TUPLE || t->n != 5 || t->a[0]->k != V_STR ||
	    strcmp(t->a[0]->s, "storage") || t->a[1]->k != V_GLOBAL || t->a[1]->g != G_STORAGE ||
	    t->a[2]->k != V_STR || t->a[4]->k != V_INT || t->a[4]->i < 0)
		return bad(u, "a persistent id that is not ('storage', class, key, location, numel)");
	struct val *s = newv(u, V_STORAGE);
	if (!s)
		return TN_ENOMEM;
	s->dt = t->a[1]->dt;
	s->i = t->a[4]->i;
	for (size_t b = 0; b < u->t->n_blob && !s->blob; b++) {
		const char *nm = u->t->blob[b].name;
		if (!strncmp(nm, u->prefix, u->plen) && !strncmp(nm + u->plen, "data/", 5) &&
		    !strcmp(nm + u->plen + 5, t->a[2]->s))
			s->blob = &u->t->blob[b];
	}
	if (!s->blob)
		return tn_fail(TN_EDATA, "%s: storage %sdata/%s is not in the archive", u->t->path,
			       u->prefix, t->a[2]->s);
	if (s->blob->len / tn_dtype_size(s->dt) < (uint64_t)s->i)
		return tn_fail(TN_EDATA, "%s: storage %s holds %zu bytes, fewer than its %lld "
			       "elements", u->t->path, s->blob->name, s->blob->len, (long long)s->i);
	return push(u, s);
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]). */
static int rebuild(struct up *u, struct val *args)
{
	if (args->n < 6 || args->n > 7 || args->a[0]->k != V_STORAGE || args->a[1]->k != V_INT ||
	    args->a[2]->k != V_TUPLE || args->a[3]->k != V_TUPLE ||
	    args->a[2]->n != args->a[3]->n || args->a[2]->n > TN_MAX_DIMS)
		return bad(u, "_rebuild_tensor_v2 with arguments other than a tensor's");
	const struct val *st = args->a[0], *size = args->a[2], *stride = args->a[3];
	struct val *v = newv(u, V_TENSOR);
	if (!v)
		return TN_ENOMEM;
	v->tt.dtype = st->dt;
	v->tt.ndim = (int)size->n;
	int64_t numel = 1, want = 1;
	for (int d = (int)size->n - 1; d >= 0; d--) {
		const struct val *x = size->a[d], *y = stride->a[d];
		if (x->k != V_INT || y->k != V_INT || x->i < 0 || (x->i > 1 && y->i != want))
			return bad(u, "a tensor that is not contiguous and row-major");
		v->tt.shape[d] = x->i;
		if (x->i && numel > INT64_MAX / x->i)
			return bad(u, "tensor too large");
		numel *= x->i;
		want *= x->i;
	}
	int64_t off = args->a[1]->i;
	if (off < 0 || off > st->i || numel > st->i - off)
		return bad(u, "a tensor outside its storage");
	size_t es = tn_dtype_size(st->dt);
	v->tt.data = st->blob->data + (size_t)off * es;
	v->tt.nbytes = (size_t)numel * es;
	return push(u, v);
}

static int reduce(struct up *u)
{
	struct val *args = pop(u), *f = pop(u);
	if (!args || !f || args->k != V_TUPLE || f->k != V_GLOBAL)
		return bad(u, "REDUCE without a known callable and an argument tuple");
	if (f->g == G_ODICT && args->n == 0)
		return push(u, newv(u, V_DICT));
	if (f->g == G_REBUILD)
		return rebuild(u, args);
	return bad(u, "REDUCE of a storage class or with arguments");
}

static int memo_put(struct up *u, size_t idx)
{
	if (!u->sp || idx >= MAX_ITEMS)
		return bad(u, "bad memo index or empty stack");
	size_t cap = u->nmemo;
	if (idx >= u->nmemo) {
		int rc = grow((void **)&u->memo, &cap, idx + 1, sizeof(*u->memo));
		if (rc)
			return rc;
		memset(u->memo + u->nmemo, 0, (cap - u->nmemo) * sizeof(*u->memo));
		u->nmemo = cap;
	}
	u->memo[idx] = u->stack[u->sp - 1];
	return TN_OK;
}

static int memo_get(struct up *u, size_t idx)
{
	if (idx >= u->nmemo || !u->memo[idx])
		return bad(u, "memo entry not set");
	return push(u, u->memo[idx]);
}

/* Dict or list at the top receives items (SETITEM(S), APPEND(S)). */
static int fill(struct up *u, enum vkind k, int marked)
{
	struct val *items = NULL, *one = NULL, *two = NULL;
	int rc = TN_OK;
	if (marked)
		rc = collect(u, V_TUPLE, &items);
	else if (!(one = pop(u)) || (k == V_DICT && !(two = pop(u))))
		return bad(u, "too few items on the stack");
	struct val *c = u->sp ? u->stack[u->sp - 1] : NULL;
	if (!rc && (!c || c->k != k))
		rc = bad(u, k == V_DICT ? "SETITEM on something not a dict"
					: "APPEND on something not a list");
	if (!rc && items && (k == V_DICT && items->n % 2))
		rc = bad(u, "SETITEMS with an odd number of items");
	for (size_t i = 0; !rc && items && i < items->n; i++)
		rc = add_item(c, items->a[i]);
	if (!rc && !items && two)
		rc = add_item(c, two);
	if (!rc && !items)
		rc = add_item(c, one);
	return rc;
}

static int tuple_n(struct up *u, size_t n)
{
	struct val *t = newv(u, V_TUPLE);
	if (!t || u->sp < n)
		return t ? bad(u, "too few items for a tuple") : TN_ENOMEM;
	for (size_t i = u->sp - n; i < u->sp; i++)
		if (u->stack[i]->k == V_MARK || add_item(t, u->stack[i]))
			return u->stack[i]->k == V_MARK ? bad(u, "a mark inside a tuple") : TN_ENOMEM;
	u->sp -= n;
	return push(u, t);
}

static int step(struct up *u, int *done)
{
	u->op_at = u->at;
	int rc = need(u, 1);
	if (rc)
		return rc;
	uint8_t op = u->p[u->at++];
	char mod[256], name[256];
	struct val *v;
	switch (op) {
	case 0x80: /* PROTO */
		if ((rc = need(u, 1)) || u->p[u->at] < 2 || u->p[u->at] > 5)
			return rc ? rc : bad(u, "pickle protocol other than 2 to 5");
		u->at++;
		return TN_OK;
	case 0x95: /* FRAME */
		if ((rc = need(u, 8)))
			return rc;
		u->at += 8;
		return TN_OK;
	case 'c':
		if ((rc = text_line(u, mod, sizeof(mod))) || (rc = text_line(u, name, sizeof(name))))
			return rc;
		return global(u, mod, name);
	case 0x93: { /* STACK_GLOBAL */
		struct val *n = pop(u), *m = pop(u);
		if (!n || !m || n->k != V_STR || m->k != V_STR)
			return bad(u, "STACK_GLOBAL without two strings");
		return global(u, m->s, n->s);
	}
	case 'q': return (rc = need(u, 1)) ? rc : memo_put(u, u->p[u->at++]);
	case 'r':
		if ((rc = need(u, 4)))
			return rc;
		u->at += 4;
		return memo_put(u, le(u->p + u->at - 4, 4));
	case 0x94: return memo_put(u, u->nmemo);
	case 'h': return (rc = need(u, 1)) ? rc : memo_get(u, u->p[u->at++]);
	case 'j':
		if ((rc = need(u, 4)))
			return rc;
		u->at += 4;
		return memo_get(u, le(u->p + u->at - 4, 4));
	case '(': return push(u, newv(u, V_MARK));
	case '}': return push(u, newv(u, V_DICT));
	case ']': return push(u, newv(u, V_LIST));
	case ')': return push(u, newv(u, V_TUPLE));
	case 't': return (rc = collect(u, V_TUPLE, &v)) ? rc : push(u, v);
	case 0x85: return tuple_n(u, 1);
	case 0x86: return tuple_n(u, 2);
	case 0x87: return tuple_n(u, 3);
	case 'X':
		if ((rc = need(u, 4)))
			return rc;
		u->at += 4;
		return str(u, le(u->p + u->at - 4, 4));
	case 0x8c: return (rc = need(u, 1)) ? rc : str(u, u->p[u->at++]);
	case 'J':
		if ((rc = need(u, 4)))
			return rc;
		u->at += 4;
		return integer(u, (int32_t)le(u->p + u->at - 4, 4));
	case 'K': return (rc = need(u, 1)) ? rc : integer(u, u->p[u->at++]);
	case 'M':
		if ((rc = need(u, 2)))
			return rc;
		u->at += 2;
		return integer(u, (int64_t)le(u->p + u->at - 2, 2));
	case 0x8a: { /* LONG1 */
		if ((rc = need(u, 1)))
			return rc;
		int n = u->p[u->at++];
		if (n > 8 || (rc = need(u, (size_t)n)))
			return rc ? rc : bad(u, "integer wider than 64 bits");
		uint64_t x = n ? le(u->p + u->at, n) : 0;
		if (n && n < 8 && (u->p[u->at + n - 1] & 0x80))
			x |= ~0ull << (8 * n); /* sign-extend */
		u->at += (size_t)n;
		return integer(u, (int64_t)x);
	}
	case 'N': return push(u, newv(u, V_NONE));
	case 0x88:
	case 0x89:
		if ((v = newv(u, V_BOOL)))
			v->i = op == 0x88;
		return push(u, v);
	case 'Q': return persid(u);
	case 'R': return reduce(u);
	case 's': return fill(u, V_DICT, 0);
	case 'u': return fill(u, V_DICT, 1);
	case 'a': return fill(u, V_LIST, 0);
	case 'e': return fill(u, V_LIST, 1);
	case 'b': /* BUILD: an OrderedDict's attributes (state_dict()._metadata), dropped */
		v = pop(u);
		if (!v || (v->k != V_DICT && v->k != V_NONE) || !u->sp ||
		    u->stack[u->sp - 1]->k != V_DICT)
			return bad(u, "BUILD of something other than a dict's attributes");
		return TN_OK;
	case '.':
		*done = 1;
		return TN_OK;
	default: {
		char what[64];
		snprintf(what, sizeof(what), "opcode 0x%02x is not one state dicts use", op);
		return bad(u, what);
	}
	}
}

/* The top-level dict: string keys, tensor values. */
static int take(struct up *u)
{
	struct val *d = u->sp == 1 ? u->stack[0] : NULL;
	if (!d || d->k != V_DICT)
		return tn_fail(TN_EDATA, "%s: data.pkl does not hold one dict", u->t->path);
	struct tn_torch *t = u->t;
	if (!(t->t = tn_calloc(d->n / 2 + 1, sizeof(*t->t))))
		return TN_ENOMEM;
	for (size_t i = 0; i + 1 < d->n; i += 2) {
		const struct val *k = d->a[i], *v = d->a[i + 1];
		if (k->k != V_STR || v->k != V_TENSOR)
			return tn_fail(TN_EDATA, "%s: entry %s of the state dict is not a tensor",
				       t->path, k->k == V_STR ? k->s : "(not a string)");
		t->t[t->n] = v->tt;
		if (!(t->t[t->n].name = strdup(k->s)))
			return tn_fail(TN_ENOMEM, "out of memory");
		t->n++;
	}
	return TN_OK;
}

static int unpickle(struct tn_torch *t, const struct tn_torch_blob *pkl)
{
	struct up u = {.t = t, .prefix = pkl->name, .plen = strlen(pkl->name) - strlen("data.pkl"),
		       .p = pkl->data, .n = pkl->len};
	int rc = TN_OK, done = 0;
	while (!rc && !done)
		rc = step(&u, &done);
	if (!rc)
		rc = take(&u);
	for (size_t i = 0; i < u.nall; i++) {
		free(u.all[i]->s);
		free(u.all[i]->a);
		free(u.all[i]);
	}
	free(u.all);
	free(u.stack);
	free(u.memo);
	return rc;
}

static int read_entry(struct archive *a, struct archive_entry *e, struct tn_torch_blob *b)
{
	size_t cap = archive_entry_size_is_set(e) ? (size_t)archive_entry_size(e) : 0;
	if (!(b->name = strdup(archive_entry_pathname(e))) || !(b->data = tn_malloc(cap + 1)))
		return tn_fail(TN_ENOMEM, "out of memory");
	for (;;) {
		if (b->len == cap && grow((void **)&b->data, &cap, cap + 1 + 65536, 1))
			return TN_ENOMEM;
		la_ssize_t got = archive_read_data(a, b->data + b->len, cap - b->len);
		if (got < 0)
			return -1;
		if (got == 0)
			return TN_OK;
		b->len += (size_t)got;
	}
}

static int read_zip(struct tn_torch *t)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	if (!a)
		return tn_fail(TN_ENOMEM, "out of memory");
	archive_read_support_format_zip(a);
	int r, rc = TN_OK;
	size_t cap = 0;
	if (archive_read_open_filename(a, t->path, 1 << 16) != ARCHIVE_OK)
		rc = tn_fail(TN_EDATA, "%s: %s", t->path, archive_error_string(a));
	while (!rc && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		if (!archive_entry_pathname(e) ||
		    grow((void **)&t->blob, &cap, t->n_blob + 1, sizeof(*t->blob))) {
			rc = tn_fail(TN_EDATA, "%s: a zip entry without a name", t->path);
			break;
		}
		memset(&t->blob[t->n_blob], 0, sizeof(*t->blob));
		rc = read_entry(a, e, &t->blob[t->n_blob++]);
		if (rc < 0)
			rc = tn_fail(TN_EDATA, "%s: %s: %s", t->path, archive_entry_pathname(e),
				     archive_error_string(a));
	}
	if (!rc && r != ARCHIVE_EOF)
		rc = tn_fail(TN_EDATA, "%s: %s", t->path, archive_error_string(a));
	archive_read_free(a);
	return rc;
}

int tn_torch_open(struct tn_torch **out, const char *path)
{
	struct tn_torch *t = tn_calloc(1, sizeof(*t));
	*out = NULL;
	if (!t || !(t->path = strdup(path))) {
		free(t);
		return tn_fail(TN_ENOMEM, "out of memory");
	}
	int rc = read_zip(t);
	const struct tn_torch_blob *pkl = NULL;
	for (size_t i = 0; !rc && i < t->n_blob; i++) {
		size_t n = strlen(t->blob[i].name);
		if (n >= 8 && !strcmp(t->blob[i].name + n - 8, "data.pkl") &&
		    (n == 8 || t->blob[i].name[n - 9] == '/')) {
			if (pkl)
				rc = tn_fail(TN_EDATA, "%s: more than one data.pkl", path);
			pkl = &t->blob[i];
		}
	}
	if (!rc && !pkl)
		rc = tn_fail(TN_EDATA, "%s: not a torch.save archive (no data.pkl)", path);
	if (!rc)
		rc = unpickle(t, pkl);
	if (rc)
		tn_torch_free(t);
	else
		*out = t;
	return rc;
}

void tn_torch_free(struct tn_torch *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->t[i].name);
	for (size_t i = 0; i < t->n_blob; i++) {
		free(t->blob[i].name);
		free(t->blob[i].data);
	}
	free(t->t);
	free(t->blob);
	free(t->path);
	free(t);
}
