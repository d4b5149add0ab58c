// SPDX-License-Identifier: GPL-2.0
/*
 * Lab 4 - a driver bug in the ioctl path of a misc character device.
 *
 * /dev/lab4_ring is a tiny per-open byte buffer: write() appends bytes (the
 * buffer is allocated on the first write), ioctl(LAB4_IOC_STAT) reports the
 * fill level and a checksum of the buffered bytes, ioctl(LAB4_IOC_RESET)
 * throws the buffer away.  The guest program /bin/lab4_client drives it:
 * open, write a message, STAT, RESET, STAT.
 *
 * The bug: lab4_reset() frees the buffer and clears the pointer, but forgets
 * to clear `len`.  The next STAT calls lab4_checksum(ctx->buf, ctx->len) with
 * buf == NULL and len != 0, and the checksum loop reads byte 0 of a NULL
 * buffer.  The oops happens in the context of the user process
 * (Comm: lab4_client) inside the ioctl system call:
 *
 *     el0_svc -> __arm64_sys_ioctl -> lab4_ioctl -> lab4_stat -> lab4_checksum
 *
 * Things to recover from the crash: the struct lab4_ctx of the open file
 * (file->private_data, passed to lab4_stat), its `len` (stale) and `buf`
 * (NULL), and `resets` (1: the reset happened just before).
 */
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "lab4_ring.h"

#define LAB4_BUF_SIZE 4096
#define lab4_call_path noinline __attribute__((__noipa__))

struct lab4_ctx {
	struct mutex lock;
	u8 *buf;		/* allocated on first write, NULL after reset */
	size_t size;		/* capacity of buf */
	size_t len;		/* bytes in buf */
	u32 resets;
	pid_t opener;
};

/* Number of open files, for the debugger's convenience. */
atomic_t lab4_open_count = ATOMIC_INIT(0);

static lab4_call_path u32 lab4_checksum(const u8 *buf, size_t len)
{
	u32 sum = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		sum = (sum << 1 | sum >> 31) + buf[i];	/* faults on buf == NULL */
		if ((i & 4095) == 4095)
			cond_resched();		/* buffers can be large */
	}
	return sum;
}

static lab4_call_path long lab4_stat(struct lab4_ctx *ctx, struct lab4_stat __user *ustat)
{
	struct lab4_stat st = { };

	mutex_lock(&ctx->lock);
	st.len = ctx->len;
	st.size = ctx->size;
	st.resets = ctx->resets;
	if (ctx->len)
		st.checksum = lab4_checksum(ctx->buf, ctx->len);
	mutex_unlock(&ctx->lock);
	return copy_to_user(ustat, &st, sizeof(st)) ? -EFAULT : 0;
}

static lab4_call_path long lab4_reset(struct lab4_ctx *ctx)
{
	mutex_lock(&ctx->lock);
	kfree(ctx->buf);
	ctx->buf = NULL;
	ctx->size = 0;
	/* BUG: missing "ctx->len = 0;" - STAT will checksum a NULL buffer. */
	ctx->resets++;
	mutex_unlock(&ctx->lock);
	return 0;
}

static long lab4_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct lab4_ctx *ctx = file->private_data;

	switch (cmd) {
	case LAB4_IOC_STAT:
		return lab4_stat(ctx, (struct lab4_stat __user *)arg);
	case LAB4_IOC_RESET:
		return lab4_reset(ctx);
	default:
		return -ENOTTY;
	}
}

static ssize_t lab4_write(struct file *file, const char __user *ubuf, size_t count,
			  loff_t *ppos)
{
	struct lab4_ctx *ctx = file->private_data;
	ssize_t ret;

	mutex_lock(&ctx->lock);
	if (!ctx->buf) {
		ctx->buf = kzalloc(LAB4_BUF_SIZE, GFP_KERNEL);
		if (!ctx->buf) {
			ret = -ENOMEM;
			goto out;
		}
		ctx->size = LAB4_BUF_SIZE;
	}
	count = min(count, ctx->size - ctx->len);
	if (!count) {
		ret = -ENOSPC;
		goto out;
	}
	if (copy_from_user(ctx->buf + ctx->len, ubuf, count)) {
		ret = -EFAULT;
		goto out;
	}
	ctx->len += count;
	ret = count;
out:
	mutex_unlock(&ctx->lock);
	return ret;
}

static int lab4_open(struct inode *inode, struct file *file)
{
	struct lab4_ctx *ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);

	if (!ctx)
		return -ENOMEM;
	mutex_init(&ctx->lock);
	ctx->opener = task_pid_nr(current);
	file->private_data = ctx;
	atomic_inc(&lab4_open_count);
	return 0;
}

static int lab4_release(struct inode *inode, struct file *file)
{
	struct lab4_ctx *ctx = file->private_data;

	kfree(ctx->buf);
	kfree(ctx);
	atomic_dec(&lab4_open_count);
	return 0;
}

static const struct file_operations lab4_fops = {
	.owner = THIS_MODULE,
	.open = lab4_open,
	.release = lab4_release,
	.write = lab4_write,
	.unlocked_ioctl = lab4_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice lab4_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "lab4_ring",
	.fops = &lab4_fops,
	.mode = 0666,
};

static int __init lab4_init(void)
{
	int ret = misc_register(&lab4_misc);

	if (!ret)
		pr_info("lab4: /dev/%s ready (minor %d)\n", lab4_misc.name, lab4_misc.minor);
	return ret;
}

static void __exit lab4_exit(void)
{
	misc_deregister(&lab4_misc);
}

module_init(lab4_init);
module_exit(lab4_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gdbkd lab 4: misc device with a buggy ioctl path");
