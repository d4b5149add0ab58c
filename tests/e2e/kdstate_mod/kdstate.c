// SPDX-License-Identifier: GPL-2.0
/*
 * Test fixture for the system-state kd commands (tests/e2e/test_kd_state.py).
 *
 * - a timer_list and an hrtimer armed an hour ahead (kd timer);
 * - a wait queue whose waiters are the writers of
 *   /sys/kernel/debug/kdstate/wait, asleep until .../release is written (kd waitq);
 * - an rbtree of five nodes (keys 10..50), an xarray with entries at indices
 *   1, 7, 300 and 70000, and a maple tree with three ranges (kd tree).
 * Addresses are logged as "kdstate: ..." lines the test reads from dmesg.
 */
#include <linux/module.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/maple_tree.h>
#include <linux/rbtree.h>
#include <linux/timer.h>
#include <linux/wait.h>
#include <linux/xarray.h>

struct kdstate_node {
	unsigned long key;
	struct rb_node rb;
};

static struct timer_list kdstate_timer;
static struct hrtimer kdstate_hrtimer;
static DECLARE_WAIT_QUEUE_HEAD(kdstate_wq);
static int kdstate_released;
static struct kdstate_node kdstate_nodes[5];
static struct rb_root kdstate_rbroot = RB_ROOT;
static DEFINE_XARRAY(kdstate_xa);
static DEFINE_MTREE(kdstate_mt);
static unsigned long kdstate_xa_items[4];
static struct dentry *kdstate_dir;

static void kdstate_timer_fn(struct timer_list *t)
{
}

static enum hrtimer_restart kdstate_hrtimer_fn(struct hrtimer *t)
{
	return HRTIMER_NORESTART;
}

static ssize_t wait_write(struct file *f, const char __user *buf, size_t n, loff_t *off)
{
	if (wait_event_interruptible(kdstate_wq, READ_ONCE(kdstate_released)))
		return -EINTR;
	return n;
}

static ssize_t release_write(struct file *f, const char __user *buf, size_t n, loff_t *off)
{
	WRITE_ONCE(kdstate_released, 1);
	wake_up_all(&kdstate_wq);
	return n;
}

static const struct file_operations wait_fops = { .owner = THIS_MODULE, .write = wait_write };
static const struct file_operations release_fops = { .owner = THIS_MODULE, .write = release_write };

static void kdstate_rb_insert(struct kdstate_node *n)
{
	struct rb_node **p = &kdstate_rbroot.rb_node, *parent = NULL;

	while (*p) {
		parent = *p;
		if (n->key < rb_entry(parent, struct kdstate_node, rb)->key)
			p = &parent->rb_left;
		else
			p = &parent->rb_right;
	}
	rb_link_node(&n->rb, parent, p);
	rb_insert_color(&n->rb, &kdstate_rbroot);
}

static int __init kdstate_init(void)
{
	static const unsigned long xa_idx[4] = { 1, 7, 300, 70000 };
	static const int order[5] = { 3, 1, 4, 0, 2 };
	int i;

	for (i = 0; i < 5; i++) {
		kdstate_nodes[order[i]].key = 10 * (order[i] + 1);
		kdstate_rb_insert(&kdstate_nodes[order[i]]);
	}
	for (i = 0; i < 4; i++) {
		kdstate_xa_items[i] = 0x6b64000000000000UL + xa_idx[i];
		xa_store(&kdstate_xa, xa_idx[i], &kdstate_xa_items[i], GFP_KERNEL);
	}
	mtree_store_range(&kdstate_mt, 0x1000, 0x1fff, &kdstate_xa_items[0], GFP_KERNEL);
	mtree_store_range(&kdstate_mt, 0x5000, 0x8fff, &kdstate_xa_items[1], GFP_KERNEL);
	mtree_store_range(&kdstate_mt, 0x100000, 0x100000, &kdstate_xa_items[2], GFP_KERNEL);

	timer_setup(&kdstate_timer, kdstate_timer_fn, 0);
	mod_timer(&kdstate_timer, jiffies + 3600 * HZ);
	hrtimer_init(&kdstate_hrtimer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	kdstate_hrtimer.function = kdstate_hrtimer_fn;
	hrtimer_start(&kdstate_hrtimer, ktime_set(3600, 0), HRTIMER_MODE_REL);

	kdstate_dir = debugfs_create_dir("kdstate", NULL);
	debugfs_create_file("wait", 0200, kdstate_dir, NULL, &wait_fops);
	debugfs_create_file("release", 0200, kdstate_dir, NULL, &release_fops);
	pr_info("kdstate: timer %px hrtimer %px wq %px rbroot %px rb-offset %zu xa %px mt %px items %px\n",
		&kdstate_timer, &kdstate_hrtimer, &kdstate_wq, &kdstate_rbroot,
		offsetof(struct kdstate_node, rb), &kdstate_xa, &kdstate_mt, kdstate_xa_items);
	return 0;
}

static void __exit kdstate_exit(void)
{
	kdstate_released = 1;
	wake_up_all(&kdstate_wq);
	del_timer_sync(&kdstate_timer);
	hrtimer_cancel(&kdstate_hrtimer);
	xa_destroy(&kdstate_xa);
	mtree_destroy(&kdstate_mt);
	debugfs_remove_recursive(kdstate_dir);
}

module_init(kdstate_init);
module_exit(kdstate_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gdbkd test fixture: timers, a wait queue, trees");
