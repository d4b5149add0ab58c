// SPDX-License-Identifier: GPL-2.0
/*
 * Lab 2 - use of a list entry after list_del(): the LIST_POISON oops.
 *
 * The module keeps a table of "sessions" on the global list `lab2_sessions`
 * (exported on purpose: walk it from the debugger).  A kernel thread,
 * lab2_reaper, periodically coalesces sessions: two neighbours that belong to
 * the same owner are merged into the first one and the second one is
 * unlinked with list_del().
 *
 * The bug: lab2_coalesce() walks the list with list_for_each_entry_safe(),
 * whose "safe" cursor `n` only protects against deleting the *current* entry
 * `pos`.  The merge deletes the *next* entry, i.e. exactly the one `n`
 * already points to.  list_del() poisons that entry's links
 * (next = LIST_POISON1, prev = LIST_POISON2, include/linux/poison.h), the walk
 * moves on to the dead entry (skipped because it is marked DEAD) and then
 * follows its poisoned `next` pointer:
 *
 *     n = list_next_entry(n, node)   with  &n->node == LIST_POISON1
 *
 * reads *(LIST_POISON1) and faults.  With CONFIG_ILLEGAL_POINTER_VALUE =
 * 0xdead000000000000 (Debian arm64) the oops reports
 * "Unable to handle kernel paging request at virtual address dead000000000100".
 * Such an address in an oops almost always means "a list entry was used
 * after list_del()" (0x...100 = a ->next was followed, 0x...122 = a ->prev).
 *
 * Fix: restart the walk after a merge, or delete only `pos` (merge the
 * current entry into its predecessor instead).
 */
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>

#ifndef list_entry_is_head	/* newer kernels have it; the course's 5.0 does not */
#define list_entry_is_head(pos, head, member) (&(pos)->member == (head))
#endif

enum lab2_state {
	LAB2_ACTIVE = 1,
	LAB2_DEAD = 2,		/* merged into a neighbour, waiting to be freed */
};

struct lab2_session {
	u32 id;
	u32 owner;		/* uid that opened the session */
	struct list_head node;	/* on lab2_sessions */
	u64 bytes;		/* traffic accounted to this session */
	enum lab2_state state;
};

/* Global on purpose, so that a debugger can walk it by name. */
LIST_HEAD(lab2_sessions);
DEFINE_MUTEX(lab2_sessions_lock);
unsigned int lab2_nr_sessions;

#define LAB2_MAX_RETIRED 16
static struct lab2_session *lab2_retired[LAB2_MAX_RETIRED];
static struct task_struct *lab2_reaper;

static const struct { u32 owner; u64 bytes; } lab2_initial[] = {
	{ 1000, 4096 }, { 1000, 512 }, { 1001, 8192 },
	{ 1002, 100 }, { 1002, 200 }, { 1003, 65536 },
};

static noinline struct lab2_session *lab2_session_open(u32 id, u32 owner, u64 bytes)
{
	struct lab2_session *s = kzalloc(sizeof(*s), GFP_KERNEL);

	if (!s)
		return NULL;
	s->id = id;
	s->owner = owner;
	s->bytes = bytes;
	s->state = LAB2_ACTIVE;
	mutex_lock(&lab2_sessions_lock);
	list_add_tail(&s->node, &lab2_sessions);
	lab2_nr_sessions++;
	mutex_unlock(&lab2_sessions_lock);
	return s;
}

/* Absorb @victim into @into and unlink it.  Freeing is deferred to the caller. */
static noinline void lab2_merge(struct lab2_session *into, struct lab2_session *victim)
{
	into->bytes += victim->bytes;
	victim->state = LAB2_DEAD;
	list_del(&victim->node);	/* victim->node.next = LIST_POISON1 */
	lab2_nr_sessions--;
}

/* Merge neighbouring sessions of the same owner.  Returns how many merged. */
static noinline int lab2_coalesce(void)
{
	struct list_head *head = &lab2_sessions;
	struct lab2_session *pos, *n;
	int merged = 0;

	list_for_each_entry_safe(pos, n, head, node) {
		if (pos->state != LAB2_ACTIVE)
			continue;
		if (list_entry_is_head(n, head, node) || n->owner != pos->owner)
			continue;
		pr_info("lab2: merging session %u into %u (owner %u)\n", n->id, pos->id, pos->owner);
		/*
		 * BUG: n is about to be unlinked, but the loop's next step is
		 * "pos = n; n = list_next_entry(n)": it will follow n's poisoned
		 * links.
		 */
		lab2_merge(pos, n);
		if (merged < LAB2_MAX_RETIRED)
			lab2_retired[merged] = n;
		merged++;
	}
	return merged;
}

static void lab2_free_retired(int count)
{
	int i;

	for (i = 0; i < count && i < LAB2_MAX_RETIRED; i++) {
		kfree(lab2_retired[i]);
		lab2_retired[i] = NULL;
	}
}

static int lab2_reaper_fn(void *unused)
{
	int merged;

	while (!kthread_should_stop()) {
		msleep(500);
		mutex_lock(&lab2_sessions_lock);
		merged = lab2_coalesce();
		mutex_unlock(&lab2_sessions_lock);
		lab2_free_retired(merged);
		if (merged)
			pr_info("lab2: coalesced %d sessions, %u left\n", merged, lab2_nr_sessions);
	}
	return 0;
}

static int __init lab2_init(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(lab2_initial); i++)
		if (!lab2_session_open(i + 1, lab2_initial[i].owner, lab2_initial[i].bytes))
			return -ENOMEM;
	pr_info("lab2: %u sessions open\n", lab2_nr_sessions);
	lab2_reaper = kthread_run(lab2_reaper_fn, NULL, "lab2_reaper");
	if (IS_ERR(lab2_reaper))
		return PTR_ERR(lab2_reaper);
	return 0;
}

static void __exit lab2_exit(void)
{
	struct lab2_session *pos, *n;

	kthread_stop(lab2_reaper);
	list_for_each_entry_safe(pos, n, &lab2_sessions, node) {
		list_del(&pos->node);
		kfree(pos);
	}
}

module_init(lab2_init);
module_exit(lab2_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gdbkd lab 2: list entry used after list_del()");
