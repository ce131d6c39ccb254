/* tasks.h - evaluation sets in the JSON-lines layouts of
 * lm-evaluation-harness, turned into (context, choices, gold) items with the
 * prompts of its task YAMLs (../shared/data/evals/tasks):
 *   MMLU      {question, choices[], answer}: "{question}\nA. ..\nB. ..\nAnswer:"
 *             with choices "A", "B", ...
 *   BoolQ     {passage, question, label}: "{passage}\nQuestion: {question}?\nAnswer:"
 *             with choices "no", "yes"
 *   HellaSwag {ctx, endings[], label}: "{ctx}" with the endings as choices
 *   LAMBADA   {text}: everything before the last ' ' as context, the last word
 *             as the one target
 * Decision: the layout is recognised from the keys of the first line and
 * every line must have the same layout; a continuation is always
 * " " + choice (lm-eval's target delimiter). */
#ifndef TN_TASKS_H
#define TN_TASKS_H

#include <stddef.h>

enum tn_task_kind { TN_TASK_MMLU, TN_TASK_BOOLQ, TN_TASK_HELLASWAG, TN_TASK_LAMBADA };

struct tn_task_item {
	char *text;     /* lm-eval's doc_to_text */
	char **choices; /* doc_to_choice, without the delimiter */
	int n_choices;
	int gold;       /* index into choices */
};

struct tn_task {
	char *path;
	enum tn_task_kind kind;
	struct tn_task_item *items;
	size_t n;
};

const char *tn_task_kind_name(enum tn_task_kind k);
/* Read every line of a task file; a malformed line fails with file:line. */
int tn_task_load(struct tn_task *t, const char *path);
void tn_task_free(struct tn_task *t);
/* The context of item i with `shots` solved examples before it (the first
 * items of the file other than i, each "text choice", joined and followed
 * by blank lines, as lm-eval's fewshot_delimiter "\n\n"); caller frees. */
int tn_task_context(const struct tn_task *t, size_t i, int shots, char **out);

#endif
