// SPDX-License-Identifier: GPL-2.0
/*
 * Truth fixture for the fault explanation and argument recovery tests
 * (tests/e2e/test_explain.py).
 *
 * Loading the module runs a chain of three functions with argument values the
 * test draws per run and passes as module parameters:
 *
 *     kdexplain_init -> kdx_top(a, b, idx) -> kdx_mid(c, idx, tag) -> kdx_leaf(c, idx)
 *
 * and kdx_leaf() faults reading c->table[idx] where c->table is NULL: the
 * fault address is idx * sizeof(u32). `c` is &kdx_ctxs[a % KDX_NCTX], whose
 * table member is at offset 8. a and tag (= b) stay live across the calls
 * below them, in callee-saved registers.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>

#define kdx_path noinline __attribute__((__noipa__))
#define KDX_NCTX 4

struct kdx_ctx {
	unsigned long magic;	/* 0x00 */
	u32 *table;		/* 0x08: NULL, the bug */
	u32 len;		/* 0x10 */
};

static struct kdx_ctx kdx_ctxs[KDX_NCTX];

static unsigned long a = 1;
module_param(a, ulong, 0444);
static unsigned long b = 2;
module_param(b, ulong, 0444);
static unsigned int idx = 3;
module_param(idx, uint, 0444);

static kdx_path u32 kdx_leaf(struct kdx_ctx *c, unsigned int i)
{
	return c->table[i] + c->len;
}

static kdx_path u32 kdx_mid(struct kdx_ctx *c, unsigned int i, unsigned long tag)
{
	u32 r = kdx_leaf(c, i);

	return r ^ (u32)tag ^ (u32)(tag >> 32);
}

static kdx_path u32 kdx_top(unsigned long x, unsigned long y, unsigned int i)
{
	struct kdx_ctx *c = &kdx_ctxs[x % KDX_NCTX];
	u32 r;

	c->magic = 0x6b64780000000000UL | x;
	r = kdx_mid(c, i, y);
	return r + (u32)x;
}

static int __init kdexplain_init(void)
{
	pr_info("kdexplain: a=%lu b=%lu idx=%u ctx=%px\n", a, b, idx, &kdx_ctxs[a % KDX_NCTX]);
	return kdx_top(a, b, idx) ? 0 : 0;
}

static void __exit kdexplain_exit(void)
{
}

module_init(kdexplain_init);
module_exit(kdexplain_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kd fault explanation truth fixture");
