// SPDX-License-Identifier: GPL-2.0
/*
 * Test fixture for the memory-forensics tests (tests/e2e/test_kmem.py).
 *
 * Makes a private slab cache "kdslab_obj" (with a constructor, so SLUB does
 * not merge it into a kmalloc cache), allocates KDSLAB_N objects spread over
 * several slabs, frees every third one, and keeps pointers to three of the
 * freed objects in globals (kdslab_dangling[]): the use-after-free a debugger
 * must explain. Also a kmalloc'd buffer and a vmalloc'd one. Every address is
 * logged with %px:
 *   kdslab: cache <kmem_cache *> size <object size>
 *   kdslab: obj <i> <addr> allocated|freed
 *   kdslab: dangling <i> global <&kdslab_dangling[i]> value <freed object>
 *   kdslab: vmalloc <addr> kmalloc <addr>
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/string.h>

#define KDSLAB_N 60

struct kdslab_obj {
	unsigned long magic;
	int index;
	char name[32];
	struct kdslab_obj *self;
	unsigned long pad[18];
};

static struct kmem_cache *kdslab_cache;
static struct kdslab_obj *kdslab_objs[KDSLAB_N];
struct kdslab_obj *kdslab_dangling[3];
static void *kdslab_vbuf;
static void *kdslab_kbuf;

static void kdslab_ctor(void *p)
{
	struct kdslab_obj *o = p;

	o->magic = 0x6b64736c61620000UL;
}

static int __init kdslab_init(void)
{
	int i, d = 0;

	kdslab_cache = kmem_cache_create("kdslab_obj", sizeof(struct kdslab_obj), 0, 0,
					 kdslab_ctor);
	if (!kdslab_cache)
		return -ENOMEM;
	pr_info("kdslab: cache %px size %zu\n", kdslab_cache, sizeof(struct kdslab_obj));
	for (i = 0; i < KDSLAB_N; i++) {
		kdslab_objs[i] = kmem_cache_alloc(kdslab_cache, GFP_KERNEL);
		if (!kdslab_objs[i])
			return -ENOMEM;
		kdslab_objs[i]->index = i;
		kdslab_objs[i]->self = kdslab_objs[i];
		snprintf(kdslab_objs[i]->name, sizeof(kdslab_objs[i]->name), "kdslab-%d", i);
	}
	for (i = 0; i < KDSLAB_N; i++) {
		if (i % 3 == 1) {
			if (d < 3 && i % 2 == 1)
				kdslab_dangling[d++] = kdslab_objs[i];
			kmem_cache_free(kdslab_cache, kdslab_objs[i]);
			pr_info("kdslab: obj %d %px freed\n", i, kdslab_objs[i]);
		} else {
			pr_info("kdslab: obj %d %px allocated\n", i, kdslab_objs[i]);
		}
	}
	for (i = 0; i < 3; i++)
		pr_info("kdslab: dangling %d global %px value %px\n", i, &kdslab_dangling[i],
			kdslab_dangling[i]);
	kdslab_vbuf = vmalloc(3 * PAGE_SIZE);
	kdslab_kbuf = kmalloc(100, GFP_KERNEL);
	if (kdslab_vbuf)
		strcpy(kdslab_vbuf, "kdslab-vmalloc-marker");
	if (kdslab_kbuf)
		strcpy(kdslab_kbuf, "kdslab-kmalloc-marker");
	pr_info("kdslab: vmalloc %px kmalloc %px\n", kdslab_vbuf, kdslab_kbuf);
	return 0;
}

static void __exit kdslab_exit(void)
{
	int i;

	for (i = 0; i < KDSLAB_N; i++)
		if (i % 3 != 1)
			kmem_cache_free(kdslab_cache, kdslab_objs[i]);
	kmem_cache_destroy(kdslab_cache);
	vfree(kdslab_vbuf);
	kfree(kdslab_kbuf);
}

module_init(kdslab_init);
module_exit(kdslab_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kd kmem/search test fixture: a private slab cache with freed objects");
