// SPDX-License-Identifier: GPL-2.0
/*
 * kdbug: a BUG() at a line the test reads from this file (the line holding "KDBUG-HERE"),
 * reached from a debugfs write. gdbkd's explanation must name this file:line from the
 * module's bug table.
 */
#include <linux/module.h>
#include <linux/debugfs.h>
#include <linux/fs.h>

static struct dentry *kdbug_dir;
int kdbug_armed = 1;

static noinline void kdbug_check(int v)
{
	BUG_ON(v == kdbug_armed); /* KDBUG-HERE */
}

static ssize_t kdbug_write(struct file *f, const char __user *buf, size_t n, loff_t *off)
{
	kdbug_check(1);
	return n;
}

static const struct file_operations kdbug_fops = {
	.owner = THIS_MODULE,
	.write = kdbug_write,
};

static int __init kdbug_init(void)
{
	kdbug_dir = debugfs_create_dir("kdbug", NULL);
	debugfs_create_file("bug", 0200, kdbug_dir, NULL, &kdbug_fops);
	return 0;
}

static void __exit kdbug_exit(void)
{
	debugfs_remove_recursive(kdbug_dir);
}

module_init(kdbug_init);
module_exit(kdbug_exit);
MODULE_LICENSE("GPL");
