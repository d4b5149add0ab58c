// SPDX-License-Identifier: GPL-2.0
/*
 * Lab 1 - NULL pointer dereference in a module's init path.
 *
 * The module models a tiny board-support driver: it knows a static table of
 * UART ports, and at load time it attaches the "console" to the port named
 * by the module parameter `console`.  The default value names a port that is
 * not in the table ("ttyLAB2": the table only has ttyLAB0 and ttyLAB1).
 *
 * The bug: lab1_find_port() returns NULL when the name is unknown, and
 * lab1_init() passes that NULL straight on to lab1_attach_console(), which
 * reads port->irq.  `irq` sits at offset 0x10 of struct lab1_port, so the
 * oops reports a NULL pointer dereference at virtual address 0x10 (not 0x0):
 * the faulting address tells you which member was being read.
 *
 * What to look at in the oops:
 *   - "pc : lab1_attach_console+0x.."  the faulting function;
 *   - x0 (the first argument, `port`) is 0;
 *   - the call trace goes lab1_init -> do_one_initcall -> do_init_module ->
 *     load_module -> __do_sys_finit_module: it happened inside insmod.
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/string.h>

/* Out of line and out of gcc's IPA clones, so the oops names these functions. */
#define lab1_path noinline __attribute__((__noipa__))

struct lab1_port {
	const char *name;		/* 0x00 */
	unsigned long base;		/* 0x08 MMIO base of the UART */
	unsigned int irq;		/* 0x10 interrupt line */
	unsigned int baud;		/* 0x14 */
	bool console;			/* 0x18 */
};

static struct lab1_port lab1_ports[] = {
	{ .name = "ttyLAB0", .base = 0x09000000, .irq = 33, .baud = 115200 },
	{ .name = "ttyLAB1", .base = 0x09040000, .irq = 34, .baud = 38400 },
};

/* Deliberately names a port that does not exist. */
static char *console = "ttyLAB2";
module_param(console, charp, 0444);
MODULE_PARM_DESC(console, "name of the port to use as console");

/* Returns NULL when no port has that name: callers must check. */
static lab1_path struct lab1_port *lab1_find_port(const char *name)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(lab1_ports); i++)
		if (strcmp(lab1_ports[i].name, name) == 0)
			return &lab1_ports[i];
	return NULL;
}

/* Stands in for request_irq(): remembers which line the console uses. */
static unsigned int lab1_console_irq;

static lab1_path int lab1_request_irq(unsigned int irq)
{
	if (irq == 0)
		return -EINVAL;
	WRITE_ONCE(lab1_console_irq, irq);
	pr_info("lab1: irq %u requested for the console\n", irq);
	return 0;
}

static lab1_path int lab1_attach_console(struct lab1_port *port)
{
	int ret;

	/* BUG: port may be NULL here; this load faults at address 0x10. */
	ret = lab1_request_irq(port->irq);
	if (ret)
		return ret;
	port->console = true;
	pr_info("lab1: console on %s (%u baud)\n", port->name, port->baud);
	return 0;
}

static int __init lab1_init(void)
{
	struct lab1_port *port;

	pr_info("lab1: %zu ports, console=%s\n", ARRAY_SIZE(lab1_ports), console);
	port = lab1_find_port(console);
	/* Missing here: if (!port) return -ENODEV; */
	return lab1_attach_console(port);
}

static void __exit lab1_exit(void)
{
}

module_init(lab1_init);
module_exit(lab1_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gdbkd lab 1: NULL pointer dereference in the init path");
