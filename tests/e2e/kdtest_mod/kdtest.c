// SPDX-License-Identifier: GPL-2.0
/*
 * Test fixture for the kd command tests (tests/e2e/test_kd_commands.py).
 *
 * - a list of three entries whose head address is logged ("kdtest: list head
 *   <addr> entry-offset <off>"), for `kd list`;
 * - /sys/kernel/debug/kdtest/dsleep: a write blocks the writer in
 *   TASK_UNINTERRUPTIBLE until /sys/kernel/debug/kdtest/release is written;
 * - /sys/kernel/debug/kdtest/warn: a write runs WARN_ON(1) (an el1 brk
 *   exception the test stops in with a gdb breakpoint on __warn).
 */
#include <linux/module.h>
#include <linux/debugfs.h>
#include <linux/list.h>
#include <linux/wait.h>
#include <linux/fs.h>

struct kdtest_item {
	unsigned long magic;
	int value;
	struct list_head node;
};

static struct kdtest_item kdtest_items[3];
static LIST_HEAD(kdtest_list);
static DECLARE_WAIT_QUEUE_HEAD(kdtest_wq);
static int kdtest_released;
static struct dentry *kdtest_dir;

static noinline void kdtest_block(void)
{
	wait_event(kdtest_wq, READ_ONCE(kdtest_released));
}

static ssize_t dsleep_write(struct file *f, const char __user *buf, size_t n, loff_t *off)
{
	kdtest_block();
	return n;
}

static ssize_t release_write(struct file *f, const char __user *buf, size_t n, loff_t *off)
{
	WRITE_ONCE(kdtest_released, 1);
	wake_up_all(&kdtest_wq);
	return n;
}

static noinline int kdtest_warn_here(int v)
{
	WARN_ON(v);
	return v + 1;
}

static ssize_t warn_write(struct file *f, const char __user *buf, size_t n, loff_t *off)
{
	kdtest_warn_here(1);
	return n;
}

static const struct file_operations dsleep_fops = { .owner = THIS_MODULE, .write = dsleep_write };
static const struct file_operations release_fops = { .owner = THIS_MODULE, .write = release_write };
static const struct file_operations warn_fops = { .owner = THIS_MODULE, .write = warn_write };

static int __init kdtest_init(void)
{
	int i;

	for (i = 0; i < 3; i++) {
		kdtest_items[i].magic = 0x6b64746573740000UL + i;
		kdtest_items[i].value = 100 + i;
		list_add_tail(&kdtest_items[i].node, &kdtest_list);
	}
	kdtest_dir = debugfs_create_dir("kdtest", NULL);
	debugfs_create_file("dsleep", 0200, kdtest_dir, NULL, &dsleep_fops);
	debugfs_create_file("release", 0200, kdtest_dir, NULL, &release_fops);
	debugfs_create_file("warn", 0200, kdtest_dir, NULL, &warn_fops);
	pr_info("kdtest: list head %px entry-offset %zu items %px\n", &kdtest_list,
		offsetof(struct kdtest_item, node), kdtest_items);
	return 0;
}

static void __exit kdtest_exit(void)
{
	debugfs_remove_recursive(kdtest_dir);
}

module_init(kdtest_init);
module_exit(kdtest_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kd command test fixture");
