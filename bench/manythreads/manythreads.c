// SPDX-License-Identifier: GPL-2.0
/* Bench module: spawn N kernel threads that sleep, so `kd ps` / `kd foreach bt`
 * and drgn's equivalents have a 10,000-task dump to chew on. */
#include <linux/module.h>
#include <linux/kthread.h>
#include <linux/delay.h>

static int nthreads = 10000;
module_param(nthreads, int, 0444);

static int sleeper(void *arg)
{
	while (!kthread_should_stop())
		msleep_interruptible(100000);
	return 0;
}

static int __init manythreads_init(void)
{
	int i;

	for (i = 0; i < nthreads; i++)
		if (IS_ERR(kthread_run(sleeper, NULL, "mt%d", i)))
			break;
	pr_info("manythreads: %d threads\n", i);
	return 0;
}
module_init(manythreads_init);
MODULE_LICENSE("GPL");
