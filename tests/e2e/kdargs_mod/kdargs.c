// SPDX-License-Identifier: GPL-2.0
/*
 * Truth fixture for argument recovery (tests/e2e/test_args.py): kd bt --args.
 *
 * The test draws the argument values per run and passes them as module
 * parameters; writing 1 to /sys/module/kdargs/parameters/go runs
 *
 *     kda_go -> kda_top(x, y, i, delta, flags)
 *              -> kda_mid(x, y + 1, i, o, delta)
 *                -> kda_inner(o, i, y + 1, (u16)x, delta)
 *                  -> kda_leaf(o, i, key ^ tag)     faults on o->table[i]
 *
 * while gdb records x0..x7 at each function's first instruction. The
 * parameters used after a call stay live across it, in callee-saved
 * registers: kda_top's x and flags, kda_mid's x, y and o, kda_inner's key,
 * tag and delta. The others are dead after the call (gcc may drop them).
 * Every function is noipa so gcc keeps the plain calling convention.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>

#define kda_path noinline __attribute__((__noipa__))

struct kda_obj {
	unsigned long magic;	/* 0x00 */
	u32 *table;		/* 0x08: NULL, the bug */
	u32 len;		/* 0x10 */
};

static struct kda_obj kda_objs[4];

static unsigned long x = 1;
module_param(x, ulong, 0444);
static unsigned long y = 2;
module_param(y, ulong, 0444);
static unsigned int i = 3;
module_param(i, uint, 0444);
static int delta = -4;
module_param(delta, int, 0444);
static unsigned int flags = 5;
module_param(flags, uint, 0444);

static kda_path u32 kda_leaf(struct kda_obj *o, u32 idx, u64 salt)
{
	return o->table[idx] + o->len + (u32)salt;
}

static kda_path u32 kda_inner(struct kda_obj *o, u32 idx, u64 key, u16 tag, int d)
{
	u32 r = kda_leaf(o, idx, key ^ tag);

	return r * tag + d + (u32)(((u64)r * key) >> 32);
}

static kda_path u64 kda_mid(u64 a, u64 b, u32 idx, struct kda_obj *o, int d)
{
	u64 r = kda_inner(o, idx, b, (u16)a, d);

	return r + a + (b >> 3) + o->len;
}

static kda_path u64 kda_top(u64 a, u64 b, u32 idx, int d, u8 f)
{
	struct kda_obj *o = &kda_objs[a % 4];
	u64 r;

	o->magic = a;
	r = kda_mid(a, b + 1, idx, o, d);
	return (r >> f) ^ a;
}

static int kda_go(const char *val, const struct kernel_param *kp)
{
	pr_info("kdargs: x=%lu y=%lu i=%u delta=%d flags=%u\n", x, y, i, delta, flags);
	return kda_top(x, y, i, delta, (u8)flags) ? 0 : 0;
}

static const struct kernel_param_ops kda_go_ops = { .set = kda_go };
module_param_cb(go, &kda_go_ops, NULL, 0200);

static int __init kdargs_init(void)
{
	pr_info("kdargs: ready\n");
	return 0;
}

static void __exit kdargs_exit(void)
{
}

module_init(kdargs_init);
module_exit(kdargs_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kd argument recovery truth fixture");
