// SPDX-License-Identifier: GPL-2.0
/*
 * Lab 8 - a stack overflow that breaks the frame-pointer chain: unwind by
 * hand.
 *
 * /proc/lab8_codec accepts lines "<codec>:<name>:<payload>" and decodes the
 * payload with the named codec (raw, rle, hex).  The path of a write:
 *
 *   vfs_write -> proc_reg_write -> [pde->proc_ops->proc_write]
 *     lab8_proc_write -> lab8_submit -> lab8_decode_line
 *       -> lab8_parse -> lab8_copy_field
 *       -> [req.codec->decode]  (function pointer)
 *
 * The bug: lab8_copy_field() copies the <name> field into the 16-byte
 * req.name of a struct lab8_request that lives on lab8_decode_line()'s stack,
 * without any bound.  A long name runs over
 *   1. req.codec (the next member): the codec pointer becomes the bytes of
 *      the name, so the indirect call's target is loaded from garbage and
 *      lab8_decode_line faults ("paging request at ...4242424a": ASCII!);
 *   2. the stack canary of lab8_decode_line (never checked: it does not
 *      return);
 *   3. the frame record {x29, x30} that lab8_submit pushed in its prologue,
 *      just above lab8_decode_line's frame.
 *
 * arm64 unwinds through frame records: x29 points at {caller's x29, return
 * address}.  The kernel's own stack dump follows them, so it shows
 * lab8_decode_line, lab8_submit and then stops at (or prints) the garbage
 * that replaced lab8_submit's record.  To get the rest of the call chain,
 * do it by hand:
 *   - x29 at the fault -> lab8_decode_line's record -> lab8_submit's frame;
 *   - lab8_submit's record is garbage, but its prologue
 *     ("stp x29, x30, [sp, #-N]!") says how big its frame is: the caller's
 *     record (lab8_proc_write's) is at lab8_submit's frame + N;
 *   - from there the chain is intact again: proc_reg_write, vfs_write,
 *     ksys_write, ... el0_svc.
 * The exact bytes written by the trigger are chosen for this layout (gcc 12,
 * arm64): 16 bytes of name, 8 bytes "BBBBBBBB" over req.codec, then filler up
 * to lab8_submit's record, which receives "FFFFFFFF" / "LLLLLLLL".
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/version.h>

/* Out of line and out of gcc's IPA clones: the frames are the source's. */
#define lab8_path noinline __attribute__((__noipa__))

#define LAB8_NAME_LEN 16

struct lab8_request;

struct lab8_codec {
	const char *name;
	int (*decode)(struct lab8_request *req);
};

struct lab8_request {
	char name[LAB8_NAME_LEN];
	const struct lab8_codec *codec;
	const char *payload;
	size_t payload_len;
	u32 seq;
	u32 decoded;
};

u32 lab8_seq;
u64 lab8_bytes_decoded;

static int lab8_decode_raw(struct lab8_request *req)
{
	req->decoded = req->payload_len;
	return 0;
}

static int lab8_decode_rle(struct lab8_request *req)
{
	size_t i;

	for (i = 0; i + 1 < req->payload_len; i += 2)
		if (req->payload[i] >= '1' && req->payload[i] <= '9')
			req->decoded += req->payload[i] - '0';
	return 0;
}

static int lab8_decode_hex(struct lab8_request *req)
{
	req->decoded = req->payload_len / 2;
	return 0;
}

static const struct lab8_codec lab8_codecs[] = {
	{ "raw", lab8_decode_raw },
	{ "rle", lab8_decode_rle },
	{ "hex", lab8_decode_hex },
};

/* Copy one field up to ':' or the end.  BUG: no bound on dst. */
static lab8_path size_t lab8_copy_field(char *dst, const char *src)
{
	size_t n = 0;

	while (src[n] && src[n] != ':' && src[n] != '\n') {
		dst[n] = src[n];
		n++;
	}
	dst[n] = '\0';
	return n;
}

static lab8_path int lab8_parse(struct lab8_request *req, const char *line)
{
	const char *colon = strchr(line, ':');
	size_t i, n;

	if (!colon)
		return -EINVAL;
	req->codec = NULL;
	for (i = 0; i < ARRAY_SIZE(lab8_codecs); i++)
		if (strlen(lab8_codecs[i].name) == colon - line &&
		    !strncmp(lab8_codecs[i].name, line, colon - line))
			req->codec = &lab8_codecs[i];
	if (!req->codec)
		return -ENOENT;
	n = lab8_copy_field(req->name, colon + 1);	/* overflows req->name */
	req->payload = colon + 1 + n + (colon[1 + n] == ':');
	req->payload_len = strcspn(req->payload, "\n");
	return 0;
}

static lab8_path int lab8_decode_line(const char *line, u32 seq)
{
	struct lab8_request req = { .seq = seq };
	int ret;

	ret = lab8_parse(&req, line);
	if (ret)
		return ret;
	/* req.codec was overwritten by the name: the load of ->decode faults. */
	ret = req.codec->decode(&req);
	if (!ret)
		lab8_bytes_decoded += req.decoded;
	return ret;
}

static lab8_path int lab8_submit(const char *line, size_t len)
{
	u32 seq = ++lab8_seq;
	int ret;

	ret = lab8_decode_line(line, seq);
	if (ret)
		pr_info("lab8: request %u (%zu bytes) failed: %d\n", seq, len, ret);
	return ret;
}

static ssize_t lab8_proc_write(struct file *file, const char __user *ubuf, size_t count,
			       loff_t *ppos)
{
	char kbuf[128];
	size_t n = min(count, sizeof(kbuf) - 1);
	int ret;

	if (copy_from_user(kbuf, ubuf, n))
		return -EFAULT;
	kbuf[n] = '\0';
	ret = lab8_submit(kbuf, n);
	return ret ? ret : count;
}

#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 6, 0)
static const struct proc_ops lab8_proc_ops = {
	.proc_write = lab8_proc_write,
};
#else				/* struct proc_ops came in v5.6; the course's 5.0 */
static const struct file_operations lab8_proc_ops = {
	.write = lab8_proc_write,
};
#endif

static struct proc_dir_entry *lab8_entry;

static int __init lab8_init(void)
{
	lab8_entry = proc_create("lab8_codec", 0222, NULL, &lab8_proc_ops);
	if (!lab8_entry)
		return -ENOMEM;
	pr_info("lab8: /proc/lab8_codec ready (codecs: raw, rle, hex)\n");
	return 0;
}

static void __exit lab8_exit(void)
{
	proc_remove(lab8_entry);
}

module_init(lab8_init);
module_exit(lab8_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gdbkd lab 8: broken frame chain, unwind by hand");
