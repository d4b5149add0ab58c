// SPDX-License-Identifier: GPL-2.0
/*
 * Spinlock hangs for kd deadlock's truth tests (tests/e2e/test_hangs.py).
 *
 *   mode=aa:   kthread "kdspin_aa", bound to CPU 1, takes kdspin_aa_lock twice.
 *   mode=abba: kthread "kdspin_ab" on CPU 0 takes kdspin_lock_a then kdspin_lock_b;
 *              kthread "kdspin_ba" on CPU 1 takes kdspin_lock_b then kdspin_lock_a.
 *              Each takes its second lock only after both hold their first.
 *   mode=mutex: a spin lock behind a mutex. "kdspin_hold" on CPU 0 takes kdspin_lock_a and
 *              spins forever holding it; "kdspin_mx" on CPU 1 takes kdspin_mutex, sleeps a
 *              little (so "kdspin_mw" can block on the mutex), then takes kdspin_lock_a.
 *   mode=queue (3 CPUs): "kdspin_qh" on CPU 0 takes kdspin_lock_a and spins forever holding
 *              it; "kdspin_q1" on CPU 1 then waits for it (the pending waiter) and
 *              "kdspin_q2" on CPU 2 a little later (queued in its MCS node: the tail).
 *   mode=rcu:  "kdspin_rcu" on CPU 1 enters an RCU read-side critical section and never
 *              leaves it (nor schedules): the grace period cannot end.
 *   mode=rwlock: "kdspin_wr" on CPU 0 takes kdspin_rwlock for writing, then kdspin_lock_b;
 *              "kdspin_rd" on CPU 1 takes kdspin_lock_b, then kdspin_rwlock for reading.
 *
 * With softlockup_panic=1 the soft-lockup detector panics the guest.
 */
#include <linux/module.h>
#include <linux/kthread.h>
#include <linux/spinlock.h>
#include <linux/atomic.h>
#include <linux/string.h>
#include <linux/mutex.h>
#include <linux/delay.h>
#include <linux/rcupdate.h>

static DEFINE_SPINLOCK(kdspin_aa_lock);
static DEFINE_SPINLOCK(kdspin_lock_a);
static DEFINE_SPINLOCK(kdspin_lock_b);
static DEFINE_MUTEX(kdspin_mutex);
static DEFINE_RWLOCK(kdspin_rwlock);
static atomic_t kdspin_first_taken = ATOMIC_INIT(0);

static char *mode = "abba";
module_param(mode, charp, 0444);

static int kdspin_aa(void *unused)
{
	spin_lock(&kdspin_aa_lock);
	spin_lock(&kdspin_aa_lock);
	spin_unlock(&kdspin_aa_lock);
	return 0;
}

static int kdspin_ab(void *unused)
{
	spin_lock(&kdspin_lock_a);
	atomic_inc(&kdspin_first_taken);
	while (atomic_read(&kdspin_first_taken) < 2)
		cpu_relax();
	spin_lock(&kdspin_lock_b);
	spin_unlock(&kdspin_lock_b);
	spin_unlock(&kdspin_lock_a);
	return 0;
}

static int kdspin_ba(void *unused)
{
	spin_lock(&kdspin_lock_b);
	atomic_inc(&kdspin_first_taken);
	while (atomic_read(&kdspin_first_taken) < 2)
		cpu_relax();
	spin_lock(&kdspin_lock_a);
	spin_unlock(&kdspin_lock_a);
	spin_unlock(&kdspin_lock_b);
	return 0;
}

static int kdspin_hold(void *unused)
{
	spin_lock(&kdspin_lock_a);
	atomic_inc(&kdspin_first_taken);
	for (;;)
		cpu_relax();
	return 0;
}

static int kdspin_mx(void *unused)
{
	while (atomic_read(&kdspin_first_taken) < 1)
		cpu_relax();
	mutex_lock(&kdspin_mutex);
	msleep(500);
	spin_lock(&kdspin_lock_a);
	spin_unlock(&kdspin_lock_a);
	mutex_unlock(&kdspin_mutex);
	return 0;
}

static int kdspin_mw(void *unused)
{
	msleep(200);
	mutex_lock(&kdspin_mutex);
	mutex_unlock(&kdspin_mutex);
	return 0;
}

static int kdspin_wr(void *unused)
{
	write_lock(&kdspin_rwlock);
	atomic_inc(&kdspin_first_taken);
	while (atomic_read(&kdspin_first_taken) < 2)
		cpu_relax();
	spin_lock(&kdspin_lock_b);
	spin_unlock(&kdspin_lock_b);
	write_unlock(&kdspin_rwlock);
	return 0;
}

static int kdspin_rd(void *unused)
{
	spin_lock(&kdspin_lock_b);
	atomic_inc(&kdspin_first_taken);
	while (atomic_read(&kdspin_first_taken) < 2)
		cpu_relax();
	read_lock(&kdspin_rwlock);
	read_unlock(&kdspin_rwlock);
	spin_unlock(&kdspin_lock_b);
	return 0;
}

static int kdspin_q1(void *unused)
{
	while (atomic_read(&kdspin_first_taken) < 1)
		cpu_relax();
	spin_lock(&kdspin_lock_a);
	spin_unlock(&kdspin_lock_a);
	return 0;
}

static int kdspin_q2(void *unused)
{
	while (atomic_read(&kdspin_first_taken) < 1)
		cpu_relax();
	mdelay(200);
	spin_lock(&kdspin_lock_a);
	spin_unlock(&kdspin_lock_a);
	return 0;
}

static int kdspin_rcu(void *unused)
{
	rcu_read_lock();
	for (;;)
		cpu_relax();
	rcu_read_unlock();
	return 0;
}

static void kdspin_start(int (*fn)(void *), const char *name, int cpu)
{
	struct task_struct *t = kthread_create(fn, NULL, "%s", name);

	if (IS_ERR(t))
		return;
	kthread_bind(t, cpu);
	wake_up_process(t);
}

static int __init kdspin_init(void)
{
	if (!strcmp(mode, "aa")) {
		kdspin_start(kdspin_aa, "kdspin_aa", 1);
	} else if (!strcmp(mode, "mutex")) {
		kdspin_start(kdspin_hold, "kdspin_hold", 0);
		kdspin_start(kdspin_mx, "kdspin_mx", 1);
		kthread_run(kdspin_mw, NULL, "kdspin_mw");
	} else if (!strcmp(mode, "queue")) {
		kdspin_start(kdspin_hold, "kdspin_qh", 0);
		kdspin_start(kdspin_q1, "kdspin_q1", 1);
		kdspin_start(kdspin_q2, "kdspin_q2", 2);
	} else if (!strcmp(mode, "rcu")) {
		kdspin_start(kdspin_rcu, "kdspin_rcu", 1);
	} else if (!strcmp(mode, "rwlock")) {
		kdspin_start(kdspin_wr, "kdspin_wr", 0);
		kdspin_start(kdspin_rd, "kdspin_rd", 1);
	} else {
		kdspin_start(kdspin_ab, "kdspin_ab", 0);
		kdspin_start(kdspin_ba, "kdspin_ba", 1);
	}
	return 0;
}
module_init(kdspin_init);
MODULE_LICENSE("GPL");
