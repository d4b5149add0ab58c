// SPDX-License-Identifier: GPL-2.0
/*
 * Lab 7 - a production-like deadlock: mixed lock types, a three-task cycle,
 * innocent tasks queued behind it, and busy tasks that are not involved.
 *
 * The module models a small storage engine with a journal, an index and a
 * pool of I/O slots:
 *
 *   lab7_journal_mutex   struct mutex          the journal (one writer)
 *   lab7_index_rwsem     struct rw_semaphore   the index (readers/writer)
 *   lab7_io_sem          struct semaphore      I/O slots (count 1)
 *   lab7_stats_lock      spinlock_t            counters; held only briefly,
 *                                              never across a sleep
 *
 * The cycle (each arrow: "holds X, waits for Y held by ..."):
 *
 *   lab7_commit  holds lab7_journal_mutex, waits in down_write(lab7_index_rwsem)
 *        ^                                          |  (read-held by lab7_scan)
 *        |                                          v
 *   lab7_flush   holds lab7_io_sem,        <-  lab7_scan holds lab7_index_rwsem
 *                waits in mutex_lock(lab7_journal_mutex)   (read), waits in
 *                                                          down(lab7_io_sem)
 *
 * Victims (blocked, but not part of the cycle; they would run if it broke):
 *   lab7_lookup     down_read(lab7_index_rwsem): queued behind the waiting
 *                   writer lab7_commit (a new reader may not overtake a
 *                   queued writer), although the lock is only read-held;
 *   lab7_audit      mutex_lock(lab7_journal_mutex), queued behind lab7_flush;
 *   lab7_writeback  down(lab7_io_sem), queued behind lab7_scan.
 *
 * Bystanders (never blocked on these locks): lab7_stats samples the counters
 * under lab7_stats_lock every 100 ms (msleep: briefly "D" each time, but its
 * context-switch count keeps moving, so the hung-task detector ignores it),
 * lab7_heartbeat ticks every 250 ms in interruptible sleep ("S").
 *
 * The bug is lab7_flush's lock order: it records the end of a flush in the
 * journal while still holding its I/O slot, closing the loop
 * journal -> index -> io -> journal.
 *
 * Determinism: each cycle task takes its first lock, announces it with a
 * completion and waits until all three hold theirs before asking for the
 * second; each victim waits until the lock it wants has a waiter queued, so
 * every wait list has the same order on every run.
 */
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/semaphore.h>
#include <linux/spinlock.h>

/* Out of line and out of gcc's IPA clones, so stack traces show these names. */
#define lab7_lock_path noinline __attribute__((__noipa__))

DEFINE_MUTEX(lab7_journal_mutex);
DECLARE_RWSEM(lab7_index_rwsem);
struct semaphore lab7_io_sem = __SEMAPHORE_INITIALIZER(lab7_io_sem, 1);
DEFINE_SPINLOCK(lab7_stats_lock);

struct lab7_stats {
	u64 commits;
	u64 scans;
	u64 flushes;
	u64 lookups;
	u64 samples;
	u64 heartbeats;
};
struct lab7_stats lab7_stats;

static DECLARE_COMPLETION(lab7_commit_ready);
static DECLARE_COMPLETION(lab7_scan_ready);
static DECLARE_COMPLETION(lab7_flush_ready);

/* Sleep-free critical section under the spinlock. */
static lab7_lock_path void lab7_account(u64 *counter)
{
	spin_lock(&lab7_stats_lock);
	(*counter)++;
	spin_unlock(&lab7_stats_lock);
}

static void lab7_wait_all_ready(void)
{
	wait_for_completion(&lab7_commit_ready);
	wait_for_completion(&lab7_scan_ready);
	wait_for_completion(&lab7_flush_ready);
}

/* --- the cycle --------------------------------------------------------- */

static lab7_lock_path void lab7_index_update(unsigned long txn)
{
	down_write(&lab7_index_rwsem);		/* waits for lab7_scan (reader) */
	lab7_account(&lab7_stats.commits);
	up_write(&lab7_index_rwsem);
}

static int lab7_commit_fn(void *unused)
{
	unsigned long txn = 4242;

	mutex_lock(&lab7_journal_mutex);
	complete_all(&lab7_commit_ready);
	lab7_wait_all_ready();
	lab7_index_update(txn);
	mutex_unlock(&lab7_journal_mutex);
	return 0;
}

static lab7_lock_path void lab7_read_blocks(unsigned int first, unsigned int count)
{
	down(&lab7_io_sem);			/* waits for lab7_flush */
	lab7_account(&lab7_stats.scans);
	up(&lab7_io_sem);
}

static int lab7_scan_fn(void *unused)
{
	down_read(&lab7_index_rwsem);
	complete_all(&lab7_scan_ready);
	lab7_wait_all_ready();
	lab7_read_blocks(128, 16);
	up_read(&lab7_index_rwsem);
	return 0;
}

static lab7_lock_path void lab7_journal_note_flush(unsigned int slot)
{
	mutex_lock(&lab7_journal_mutex);	/* waits for lab7_commit */
	lab7_account(&lab7_stats.flushes);
	mutex_unlock(&lab7_journal_mutex);
}

static int lab7_flush_fn(void *unused)
{
	down(&lab7_io_sem);
	complete_all(&lab7_flush_ready);
	lab7_wait_all_ready();
	/* BUG: notes the flush in the journal while still holding the slot. */
	lab7_journal_note_flush(0);
	up(&lab7_io_sem);
	return 0;
}

/* --- victims ----------------------------------------------------------- */

/*
 * A victim asks for its lock only once someone is already queued on it, so
 * the wait lists have a fixed order.  struct mutex and struct semaphore have
 * had a wait_list since long before 5.10 (not under PREEMPT_RT, where a mutex
 * is an rt_mutex; Debian's cloud kernels are not RT).
 */

static bool lab7_mutex_has_waiters(struct mutex *m)
{
	return !list_empty(&m->wait_list);
}

static bool lab7_sem_has_waiters(struct semaphore *s)
{
	return !list_empty(&s->wait_list);
}

static lab7_lock_path void lab7_index_lookup(u64 key)
{
	down_read(&lab7_index_rwsem);		/* queued behind writer lab7_commit */
	lab7_account(&lab7_stats.lookups);
	up_read(&lab7_index_rwsem);
}

static int lab7_lookup_fn(void *unused)
{
	while (!rwsem_is_contended(&lab7_index_rwsem))
		msleep(20);
	msleep(50);
	lab7_index_lookup(0x1234);
	return 0;
}

static lab7_lock_path void lab7_journal_audit(unsigned int since)
{
	mutex_lock(&lab7_journal_mutex);	/* queued behind lab7_flush */
	mutex_unlock(&lab7_journal_mutex);
}

static int lab7_audit_fn(void *unused)
{
	while (!lab7_mutex_has_waiters(&lab7_journal_mutex))
		msleep(20);
	msleep(50);
	lab7_journal_audit(1);
	return 0;
}

static lab7_lock_path void lab7_write_back(unsigned int pages)
{
	down(&lab7_io_sem);			/* queued behind lab7_scan */
	up(&lab7_io_sem);
}

static int lab7_writeback_fn(void *unused)
{
	while (!lab7_sem_has_waiters(&lab7_io_sem))
		msleep(20);
	msleep(50);
	lab7_write_back(32);
	return 0;
}

/* --- bystanders -------------------------------------------------------- */

u64 lab7_last_sample[3];

static int lab7_stats_fn(void *unused)
{
	while (!kthread_should_stop()) {
		spin_lock(&lab7_stats_lock);
		lab7_stats.samples++;
		lab7_last_sample[0] = lab7_stats.commits;
		lab7_last_sample[1] = lab7_stats.scans;
		lab7_last_sample[2] = lab7_stats.flushes;
		spin_unlock(&lab7_stats_lock);
		msleep(100);
	}
	return 0;
}

static int lab7_heartbeat_fn(void *unused)
{
	while (!kthread_should_stop()) {
		lab7_account(&lab7_stats.heartbeats);
		schedule_timeout_interruptible(msecs_to_jiffies(250));
	}
	return 0;
}

static const struct {
	int (*fn)(void *data);
	const char *comm;
} lab7_threads[] = {
	{ lab7_stats_fn,     "lab7_stats" },
	{ lab7_heartbeat_fn, "lab7_heartbeat" },
	{ lab7_commit_fn,    "lab7_commit" },
	{ lab7_scan_fn,      "lab7_scan" },
	{ lab7_flush_fn,     "lab7_flush" },
	{ lab7_lookup_fn,    "lab7_lookup" },
	{ lab7_audit_fn,     "lab7_audit" },
	{ lab7_writeback_fn, "lab7_writeback" },
};

static int __init lab7_init(void)
{
	struct task_struct *t;
	int i;

	for (i = 0; i < ARRAY_SIZE(lab7_threads); i++) {
		t = kthread_run(lab7_threads[i].fn, NULL, "%s", lab7_threads[i].comm);
		if (IS_ERR(t))
			return PTR_ERR(t);	/* lab code: no unwinding */
	}
	pr_info("lab7: storage engine started (%zu threads)\n", ARRAY_SIZE(lab7_threads));
	return 0;
}

module_init(lab7_init);
/* No module_exit: the deadlocked threads never finish. */
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gdbkd lab 7: mutex/rwsem/semaphore deadlock with victims");
