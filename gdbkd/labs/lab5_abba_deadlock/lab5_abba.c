// SPDX-License-Identifier: GPL-2.0
/*
 * Lab 5 - an ABBA deadlock between two kernel threads.
 *
 * The module models a block driver with two mutexes:
 *   lab5_queue_lock  protects the request queue,
 *   lab5_dev_lock    protects the device state (registers, reset status).
 *
 * The documented lock order is queue -> dev.  The submit path follows it:
 * lab5_submit takes the queue lock, then the device lock to ring the
 * doorbell.  The reset path does not: lab5_reset takes the device lock first
 * (to stop the hardware) and then the queue lock (to fail the pending
 * requests).  Each thread holds one lock and sleeps forever (TASK_UNINTERRUPTIBLE,
 * "D" in ps) waiting for the other:
 *
 *     lab5_submit: holds lab5_queue_lock, waits for lab5_dev_lock
 *     lab5_reset:  holds lab5_dev_lock,   waits for lab5_queue_lock
 *
 * Two completions make the interleaving deterministic: each thread signals
 * once it holds its first lock and waits for the other to do the same before
 * asking for its second lock, so the cycle forms on every run.
 *
 * After kernel.hung_task_timeout_secs (the lab sets it to 5) khungtaskd
 * reports both threads: "INFO: task lab5_submit:<pid> blocked for more than
 * 5 seconds."  Find the cycle: each task's mutex_lock() argument (or the
 * struct mutex_waiter on its stack) names the lock it waits for, and the
 * mutex's owner field (low bits masked) names the task holding it.
 */
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/mutex.h>

/* Out of line and out of gcc's IPA clones, so stack traces show these names. */
#define lab5_lock_path noinline __attribute__((__noipa__))

struct lab5_request {
	unsigned int tag;
	unsigned int sectors;
};

DEFINE_MUTEX(lab5_queue_lock);
DEFINE_MUTEX(lab5_dev_lock);

static DECLARE_COMPLETION(lab5_submit_has_queue);
static DECLARE_COMPLETION(lab5_reset_has_dev);

static struct lab5_request lab5_queue[8];
static unsigned int lab5_queued;
unsigned long lab5_doorbells, lab5_resets;
unsigned int lab5_last_tag;

static lab5_lock_path void lab5_ring_doorbell(unsigned int tag)
{
	mutex_lock(&lab5_dev_lock);	/* blocks forever: held by lab5_reset */
	lab5_doorbells++;
	lab5_last_tag = tag;
	mutex_unlock(&lab5_dev_lock);
}

static lab5_lock_path void lab5_fail_pending(void)
{
	mutex_lock(&lab5_queue_lock);	/* blocks forever: held by lab5_submit */
	lab5_queued = 0;
	mutex_unlock(&lab5_queue_lock);
}

static int lab5_submit_fn(void *unused)
{
	struct lab5_request rq = { .tag = 7, .sectors = 8 };

	mutex_lock(&lab5_queue_lock);			/* order: queue ... */
	lab5_queue[lab5_queued++] = rq;
	complete(&lab5_submit_has_queue);
	wait_for_completion(&lab5_reset_has_dev);	/* make the race certain */
	lab5_ring_doorbell(rq.tag);			/* ... then dev */
	mutex_unlock(&lab5_queue_lock);
	return 0;
}

static int lab5_reset_fn(void *unused)
{
	mutex_lock(&lab5_dev_lock);			/* BUG: dev first ... */
	lab5_resets++;
	complete(&lab5_reset_has_dev);
	wait_for_completion(&lab5_submit_has_queue);
	lab5_fail_pending();				/* ... then queue */
	mutex_unlock(&lab5_dev_lock);
	return 0;
}

static int __init lab5_init(void)
{
	struct task_struct *t;

	t = kthread_run(lab5_submit_fn, NULL, "lab5_submit");
	if (IS_ERR(t))
		return PTR_ERR(t);
	t = kthread_run(lab5_reset_fn, NULL, "lab5_reset");
	if (IS_ERR(t))
		return PTR_ERR(t);	/* lab5_submit waits forever: lab code */
	pr_info("lab5: submit and reset threads started\n");
	return 0;
}

module_init(lab5_init);
/* No module_exit: the threads never finish, the module cannot be unloaded. */
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gdbkd lab 5: ABBA deadlock between two mutexes");
