/* tasks.c - lm-eval task files into items (see tasks.h). Each line is
 * parsed on its own with jansson, so an error names its line. */
#include "tasks.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "util.h"

const char *tn_task_kind_name(enum tn_task_kind k)
{
	static const char *const names[] = {"mmlu", "boolq", "hellaswag", "lambada"};
	return names[k];
}

/* printf into a fresh string (NULL when out of memory). */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	char *s = NULL;
	if (vasprintf(&s, f, ap) < 0)
		s = NULL;
	va_end(ap);
	if (!s)
		tn_fail(TN_ENOMEM, "out of memory");
	return s;
}

/* Python's str.strip() for ASCII whitespace. */
static char *strip(const char *s)
{
	size_t a = 0, b = strlen(s);
	while (a < b && strchr(" \t\n\r\v\f", s[a]))
		a++;
	while (b > a && strchr(" \t\n\r\v\f", s[b - 1]))
		b--;
	return fmt("%.*s", (int)(b - a), s + a);
}

static int kind_of(json_t *o, enum tn_task_kind *k)
{
	if (json_object_get(o, "endings"))
		*k = TN_TASK_HELLASWAG;
	else if (json_object_get(o, "choices"))
		*k = TN_TASK_MMLU;
	else if (json_object_get(o, "passage"))
		*k = TN_TASK_BOOLQ;
	else if (json_object_get(o, "text"))
		*k = TN_TASK_LAMBADA;
	else
		return -1;
	return 0;
}

/* A string field, or NULL with *what set. */
static const char *str_field(json_t *o, const char *key, const char **what)
{
	const char *s = json_string_value(json_object_get(o, key));
	if (!s)
		*what = key;
	return s;
}

/* An integer field (a bool or a decimal string too, as lm-eval's int()). */
static int int_field(json_t *o, const char *key, int *out)
{
	json_t *v = json_object_get(o, key);
	if (json_is_integer(v))
		*out = (int)json_integer_value(v);
	else if (json_is_boolean(v))
		*out = json_is_true(v);
	else if (json_is_string(v) && sscanf(json_string_value(v), "%d", out) == 1)
		return 0;
	else
		return -1;
	return 0;
}

static int set_choices(struct tn_task_item *it, json_t *arr)
{
	it->n_choices = (int)json_array_size(arr);
	it->choices = tn_calloc((size_t)it->n_choices, sizeof(char *));
	if (!it->choices)
		return TN_ENOMEM;
	for (int c = 0; c < it->n_choices; c++) {
		const char *s = json_string_value(json_array_get(arr, (size_t)c));
		if (!s || !(it->choices[c] = fmt("%s", s)))
			return s ? TN_ENOMEM : TN_EDATA;
	}
	return TN_OK;
}

static int fixed_choices(struct tn_task_item *it, const char *const *names, int n)
{
	it->n_choices = n;
	it->choices = tn_calloc((size_t)n, sizeof(char *));
	for (int c = 0; it->choices && c < n; c++)
		if (!(it->choices[c] = fmt("%s", names[c])))
			return TN_ENOMEM;
	return it->choices ? TN_OK : TN_ENOMEM;
}

/* "{question}\nA. c0\nB. c1...\nAnswer:" with choices "A".. */
static int mmlu_item(struct tn_task_item *it, json_t *o, const char **what)
{
	const char *q = str_field(o, "question", what);
	json_t *ch = json_object_get(o, "choices");
	if (!q)
		return TN_EDATA;
	if (!json_is_array(ch) || json_array_size(ch) < 1 || json_array_size(ch) > 26) {
		*what = "choices (an array of 1 to 26 strings)";
		return TN_EDATA;
	}
	if (int_field(o, "answer", &it->gold)) {
		*what = "answer";
		return TN_EDATA;
	}
	char *s = strip(q);
	int rc = s ? set_choices(it, ch) : TN_ENOMEM;
	if (rc == TN_EDATA)
		*what = "choices (an array of strings)";
	for (int c = 0; !rc && c < it->n_choices; c++) {
		char *t = fmt("%s\n%c. %s", s, 'A' + c, it->choices[c]);
		free(s);
		if (!(s = t))
			rc = TN_ENOMEM;
		free(it->choices[c]);
		it->choices[c] = rc ? NULL : fmt("%c", 'A' + c);
		if (!rc && !it->choices[c])
			rc = TN_ENOMEM;
	}
	if (!rc && !(it->text = fmt("%s\nAnswer:", s)))
		rc = TN_ENOMEM;
	free(s);
	return rc;
}

static int boolq_item(struct tn_task_item *it, json_t *o, const char **what)
{
	static const char *const noyes[] = {"no", "yes"};
	const char *p = str_field(o, "passage", what), *q = p ? str_field(o, "question", what) : NULL;
	if (!q)
		return TN_EDATA;
	if (int_field(o, "label", &it->gold)) {
		*what = "label";
		return TN_EDATA;
	}
	if (!(it->text = fmt("%s\nQuestion: %s?\nAnswer:", p, q)))
		return TN_ENOMEM;
	return fixed_choices(it, noyes, 2);
}

static int hellaswag_item(struct tn_task_item *it, json_t *o, const char **what)
{
	const char *c = str_field(o, "ctx", what);
	json_t *e = json_object_get(o, "endings");
	if (!c)
		return TN_EDATA;
	if (int_field(o, "label", &it->gold)) {
		*what = "label";
		return TN_EDATA;
	}
	if (!json_is_array(e) || !json_array_size(e)) {
		*what = "endings (a non-empty array of strings)";
		return TN_EDATA;
	}
	if (!(it->text = fmt("%s", c)))
		return TN_ENOMEM;
	int rc = set_choices(it, e);
	if (rc == TN_EDATA)
		*what = "endings (a non-empty array of strings)";
	return rc;
}

/* text.split(' ')[:-1] joined by ' ', and the last piece. */
static int lambada_item(struct tn_task_item *it, json_t *o, const char **what)
{
	const char *s = str_field(o, "text", what);
	const char *sp = s ? strrchr(s, ' ') : NULL;
	if (!sp) {
		*what = s ? "text (no space before a last word)" : *what;
		return TN_EDATA;
	}
	if (!(it->text = fmt("%.*s", (int)(sp - s), s)))
		return TN_ENOMEM;
	it->n_choices = 1;
	it->gold = 0;
	it->choices = tn_calloc(1, sizeof(char *));
	if (!it->choices || !(it->choices[0] = fmt("%s", sp + 1)))
		return TN_ENOMEM;
	return TN_OK;
}

static void item_free(struct tn_task_item *it)
{
	for (int c = 0; it->choices && c < it->n_choices; c++)
		free(it->choices[c]);
	free(it->choices);
	free(it->text);
}

static int parse_line(struct tn_task *t, const char *line, size_t len, size_t lineno)
{
	json_error_t err;
	json_t *o = json_loadb(line, len, 0, &err);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return tn_fail(TN_EDATA, "%s:%zu: not a JSON object%s%s", t->path, lineno,
			       o ? "" : ": ", o ? "" : err.text);
	}
	enum tn_task_kind k = TN_TASK_MMLU;
	const char *what = NULL;
	int rc = TN_OK;
	if (kind_of(o, &k))
		rc = tn_fail(TN_EDATA, "%s:%zu: no key of a known layout (choices, passage, endings, "
			     "text)", t->path, lineno);
	else if (t->n && k != t->kind)
		rc = tn_fail(TN_EDATA, "%s:%zu: a %s item in a %s file", t->path, lineno,
			     tn_task_kind_name(k), tn_task_kind_name(t->kind));
	struct tn_task_item *it = &t->items[t->n];
	memset(it, 0, sizeof(*it));
	if (!rc) {
		t->kind = k;
		rc = k == TN_TASK_MMLU	    ? mmlu_item(it, o, &what)
		     : k == TN_TASK_BOOLQ   ? boolq_item(it, o, &what)
		     : k == TN_TASK_HELLASWAG ? hellaswag_item(it, o, &what)
					    : lambada_item(it, o, &what);
		if (rc == TN_EDATA)
			rc = tn_fail(TN_EDATA, "%s:%zu: missing or bad %s", t->path, lineno, what);
		else if (!rc && (it->gold < 0 || it->gold >= it->n_choices))
			rc = tn_fail(TN_EDATA, "%s:%zu: answer %d is not one of the %d choices",
				     t->path, lineno, it->gold, it->n_choices);
	}
	json_decref(o);
	if (rc)
		item_free(it);
	else
		t->n++;
	return rc;
}

int tn_task_load(struct tn_task *t, const char *path)
{
	memset(t, 0, sizeof(*t));
	uint8_t *data;
	size_t len, lines = 0;
	int rc = tn_read_file(path, &data, &len);
	if (rc)
		return rc;
	for (size_t i = 0; i < len; i++)
		lines += data[i] == '\n';
	t->path = strdup(path);
	t->items = tn_calloc(lines + 1, sizeof(*t->items));
	if (!t->path || !t->items)
		rc = tn_fail(TN_ENOMEM, "out of memory");
	size_t lineno = 0;
	for (size_t at = 0; !rc && at < len;) {
		const uint8_t *nl = memchr(data + at, '\n', len - at);
		size_t end = nl ? (size_t)(nl - data) : len;
		lineno++;
		if (end > at) /* an empty line (the end of the file) holds no item */
			rc = parse_line(t, (const char *)data + at, end - at, lineno);
		at = end + 1;
	}
	free(data);
	if (!rc && !t->n)
		rc = tn_fail(TN_EDATA, "%s: no items", path);
	if (rc)
		tn_task_free(t);
	return rc;
}

void tn_task_free(struct tn_task *t)
{
	for (size_t i = 0; t->items && i < t->n; i++)
		item_free(&t->items[i]);
	free(t->items);
	free(t->path);
	memset(t, 0, sizeof(*t));
}

int tn_task_context(const struct tn_task *t, size_t i, int shots, char **out)
{
	char *s = fmt("%s", "");
	for (size_t j = 0, k = 0; s && j < t->n && (int)k < shots; j++) {
		if (j == i)
			continue;
		const struct tn_task_item *e = &t->items[j];
		char *n = fmt("%s%s %s\n\n", s, e->text, e->choices[e->gold]);
		free(s);
		s = n;
		k++;
	}
	char *c = s ? fmt("%s%s", s, t->items[i].text) : NULL;
	free(s);
	*out = c;
	return c ? TN_OK : TN_ENOMEM;
}
