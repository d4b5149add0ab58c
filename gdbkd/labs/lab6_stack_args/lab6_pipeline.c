// SPDX-License-Identifier: GPL-2.0
/*
 * Lab 6 - a crash deep in a call chain: find the functions' arguments on the
 * stack.
 *
 * The module models the receive path of a network-like device.  A kernel
 * thread, lab6_rx, polls a descriptor ring; each descriptor goes through
 *
 *   lab6_rx_fn -> lab6_poll_ring(ring, budget, epoch)
 *     -> lab6_rx_one(ring, desc, idx, cookie)
 *       -> lab6_deliver(ring, pkt, proto, len, flow)
 *         -> lab6_route(pkt, proto, flow, hops)
 *           -> lab6_fib_lookup(table, key, proto)      <- faults
 *
 * The bug: descriptor 5 of the ring carries protocol 0x0b, for which no
 * routing table was ever registered (lab6_tables[] has entries for 1..4
 * only), and lab6_route() does not check the table before using it:
 * lab6_fib_lookup() reads table->mask from a NULL table.
 *
 * The oops tells you *where*, not *which packet*.  The interesting values
 * (which ring, which descriptor index, what length and flow hash) were
 * passed to the upper functions in x0..x7.  Argument registers are
 * caller-clobbered, so they are long gone at the time of the crash; but
 * each function that still needs an argument after making a call first
 * moves it into a callee-saved register (x19..x28), and every deeper
 * function that wants to use those registers itself saves the caller's
 * values in its prologue ("stp x19, x20, [sp, #16]" ...).  So the arguments
 * of lab6_rx_one (idx!) and lab6_deliver (len, flow) sit in the register
 * save areas of the frames below them.  Disassemble each function's
 * prologue to learn which register went to which slot, then read the slots
 * from the frame (x29 chain) of the callee that saved them.
 *
 * Everything on this path is noinline and noipa, so gcc keeps the plain
 * calling convention the source shows (no .isra/.constprop clones).
 */
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/slab.h>

#define lab6_rx_path noinline __attribute__((__noipa__))

#define LAB6_RING_SIZE	8
#define LAB6_NR_PROTO	16

struct lab6_desc {
	u64 dma_addr;
	u16 len;
	u8 proto;
	u8 flags;
	u32 flow_hash;
};

struct lab6_ring {
	const char *name;
	unsigned int head;
	unsigned int size;
	u64 packets;
	u64 bytes;
	struct lab6_desc desc[LAB6_RING_SIZE];
};

struct lab6_pkt {
	const struct lab6_desc *desc;
	u32 len;
	u32 mark;
	u64 cookie;
};

struct lab6_route_entry {
	u32 key;
	u32 next_hop;
};

struct lab6_table {
	const char *name;
	u32 mask;				/* size - 1 */
	struct lab6_route_entry *slots;
};

/* Routing tables by protocol number; only 1..4 are registered. */
struct lab6_table *lab6_tables[LAB6_NR_PROTO];
struct lab6_ring *lab6_ring0;
u64 lab6_delivered;

static const struct { u16 len; u8 proto; u32 flow; } lab6_traffic[LAB6_RING_SIZE] = {
	{ 60, 1, 0x1a2b3c4d }, { 1500, 2, 0x00c0ffee }, { 576, 3, 0x12345678 },
	{ 64, 1, 0xdeadbeef }, { 128, 4, 0x0badf00d }, { 1234, 0x0b, 0x5eed1234 },
	{ 90, 2, 0x77777777 }, { 300, 3, 0x31415926 },
};

u64 lab6_fib_misses;

static lab6_rx_path void lab6_fib_miss(const struct lab6_table *table, u32 key)
{
	lab6_fib_misses++;
	pr_debug("lab6: no route for key %08x in table %s\n", key, table->name);
}

/* Jenkins-style mix of the flow key and protocol into a slot number. */
static lab6_rx_path u32 lab6_fib_hash(u32 key, u8 proto)
{
	u32 h = key ^ ((u32)proto << 24);

	h ^= h >> 16;
	h *= 0x7feb352d;
	h ^= h >> 15;
	return h;
}

static lab6_rx_path u32 lab6_fib_lookup(const struct lab6_table *table, u32 key, u8 proto)
{
	u32 hash = lab6_fib_hash(key, proto);
	/* BUG (reached): table is NULL for an unregistered protocol. */
	const struct lab6_route_entry *e = &table->slots[hash & table->mask];

	if (e->key != key) {
		lab6_fib_miss(table, key);
		return 0;
	}
	return e->next_hop + proto;
}

static lab6_rx_path u32 lab6_route(struct lab6_pkt *pkt, u8 proto, u32 flow, u32 hops)
{
	const struct lab6_table *table = lab6_tables[proto % LAB6_NR_PROTO];
	u32 key = flow ^ (pkt->len << 16) ^ hops;
	u32 nh;

	/* Missing: if (!table) { drop the packet; } */
	nh = lab6_fib_lookup(table, key, proto);
	pkt->mark = nh ^ flow ^ hops;
	return nh + hops + proto;
}

static lab6_rx_path int lab6_deliver(struct lab6_ring *ring, struct lab6_pkt *pkt, u8 proto,
				    u32 len, u32 flow)
{
	u32 nh;

	pkt->len = len;
	nh = lab6_route(pkt, proto, flow, 4);
	ring->packets++;
	ring->bytes += len;
	lab6_delivered += nh ^ flow ^ proto;
	return nh ? 0 : -EHOSTUNREACH;
}

static lab6_rx_path int lab6_rx_one(struct lab6_ring *ring, const struct lab6_desc *desc,
				   unsigned int idx, u64 cookie)
{
	struct lab6_pkt pkt = { .desc = desc, .cookie = cookie };
	int ret;

	ret = lab6_deliver(ring, &pkt, desc->proto, desc->len, desc->flow_hash);
	if (ret)
		pr_debug("lab6: %s: desc %u (cookie %llx) dropped: %d\n",
			 ring->name, idx, cookie, ret);
	ring->head = (idx + 1) % ring->size;
	return ret + (int)(pkt.mark & 0) + (int)(cookie & 0);
}

static lab6_rx_path unsigned int lab6_poll_ring(struct lab6_ring *ring, unsigned int budget,
					       u64 epoch)
{
	unsigned int done = 0, idx;

	while (done < budget) {
		idx = ring->head;		/* lab6_rx_one() advances head */
		lab6_rx_one(ring, &ring->desc[idx], idx, epoch << 8 | idx);
		done++;
	}
	return done + (unsigned int)(epoch & 0);
}

static int lab6_rx_fn(void *data)
{
	struct lab6_ring *ring = data;
	u64 epoch = 0x6000;

	while (!kthread_should_stop()) {
		msleep(300);
		lab6_poll_ring(ring, LAB6_RING_SIZE, ++epoch);
	}
	return 0;
}

static struct lab6_table *lab6_table_new(const char *name, unsigned int order)
{
	struct lab6_table *t = kzalloc(sizeof(*t), GFP_KERNEL);

	if (!t)
		return NULL;
	t->name = name;
	t->mask = (1U << order) - 1;
	t->slots = kcalloc(1U << order, sizeof(*t->slots), GFP_KERNEL);
	if (!t->slots) {
		kfree(t);
		return NULL;
	}
	return t;
}

static int __init lab6_init(void)
{
	static const char * const names[] = { "", "main", "local", "mgmt", "backup" };
	struct task_struct *t;
	int i;

	for (i = 1; i <= 4; i++) {
		lab6_tables[i] = lab6_table_new(names[i], 4 + i);
		if (!lab6_tables[i])
			return -ENOMEM;
	}
	lab6_ring0 = kzalloc(sizeof(*lab6_ring0), GFP_KERNEL);
	if (!lab6_ring0)
		return -ENOMEM;
	lab6_ring0->name = "rx0";
	lab6_ring0->size = LAB6_RING_SIZE;
	for (i = 0; i < LAB6_RING_SIZE; i++) {
		lab6_ring0->desc[i].dma_addr = 0x80000000ULL + i * 0x800;
		lab6_ring0->desc[i].len = lab6_traffic[i].len;
		lab6_ring0->desc[i].proto = lab6_traffic[i].proto;
		lab6_ring0->desc[i].flow_hash = lab6_traffic[i].flow;
	}
	t = kthread_run(lab6_rx_fn, lab6_ring0, "lab6_rx");
	if (IS_ERR(t))
		return PTR_ERR(t);
	pr_info("lab6: ring %s with %u descriptors polled by lab6_rx\n",
		lab6_ring0->name, lab6_ring0->size);
	return 0;
}

module_init(lab6_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gdbkd lab 6: find the arguments on the stack");
