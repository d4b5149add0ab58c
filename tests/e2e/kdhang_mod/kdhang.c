// SPDX-License-Identifier: GPL-2.0
/*
 * A completion nobody completes, behind a mutex, for kd deadlock's truth tests
 * (tests/e2e/test_hangs.py).
 *
 *   kthread "kdhang_holder" takes kdhang_mutex, then waits for kdhang_done
 *   (mode=completion, the default) or sleeps in wait_event(kdhang_wq, ...) (mode=wq);
 *   kthread "kdhang_waiter" then blocks on kdhang_mutex.
 *
 * Nothing calls complete(&kdhang_done) or wakes kdhang_wq. With hung_task_panic=1 the hung-task detector
 * panics the guest once both have been in D state for hung_task_timeout_secs.
 */
#include <linux/module.h>
#include <linux/kthread.h>
#include <linux/mutex.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/wait.h>
#include <linux/string.h>

static DEFINE_MUTEX(kdhang_mutex);
static DECLARE_COMPLETION(kdhang_done);
static DECLARE_WAIT_QUEUE_HEAD(kdhang_wq);
static int kdhang_cond;

static char *mode = "completion";
module_param(mode, charp, 0444);

static int kdhang_holder(void *unused)
{
	mutex_lock(&kdhang_mutex);
	if (!strcmp(mode, "wq"))
		wait_event(kdhang_wq, READ_ONCE(kdhang_cond));
	else
		wait_for_completion(&kdhang_done);
	mutex_unlock(&kdhang_mutex);
	return 0;
}

static int kdhang_waiter(void *unused)
{
	msleep(200);
	mutex_lock(&kdhang_mutex);
	mutex_unlock(&kdhang_mutex);
	return 0;
}

static int __init kdhang_init(void)
{
	kthread_run(kdhang_holder, NULL, "kdhang_holder");
	kthread_run(kdhang_waiter, NULL, "kdhang_waiter");
	return 0;
}
module_init(kdhang_init);
MODULE_LICENSE("GPL");
