// SPDX-License-Identifier: GPL-2.0
/*
 * Lab 3 - a NULL struct member reached through several calls.
 *
 * The module models a sensor hub with five channels.  Channels 0-2 and 4
 * are ADC inputs, each with its own calibration record.  Channel 3 is a
 * *derived* channel ("board temperature"): it reads the raw value of its
 * source channel and shares that channel's calibration.  A delayed work item
 * polls all channels every 200 ms on the system workqueue.
 *
 * The bug is an initialisation-order problem: lab3_hub_setup() initialises
 * the channels in index order, and a derived channel copies its source's
 * calibration pointer when it is initialised.  Channel 3's source is channel
 * 4, which is initialised *after* it, so channel 3 copies a NULL pointer.
 * Nothing goes wrong at load time; the first poll walks
 *
 *     lab3_poll_work(work)
 *       -> lab3_hub_poll(hub, budget)
 *            -> lab3_read_channel(hub, ch, &value)
 *                 -> lab3_apply_calib(ch->calib, raw, ch->index)
 *
 * and lab3_apply_calib() dereferences the NULL calibration.  The oops shows
 * only a small address (the offset of the member being read) and a pc in
 * lab3_apply_calib; to find out *which* channel had no calibration, look at
 * the arguments: x2 (index) in the faulting frame, or `ch` in the callers'
 * frames, then follow hub->chan[i].calib in memory (the hub is the global
 * `lab3_hub`).
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/ratelimit.h>	/* pr_warn_ratelimited needs it; 5.0's printk.h does not include it */
#include <linux/slab.h>
#include <linux/workqueue.h>

#define LAB3_NR_CHANNELS 5

/*
 * The functions of the poll path are kept out of line *and* out of gcc's
 * inter-procedural optimisations (which would otherwise pass calib's fields
 * instead of the pointer, or rename the functions to *.isra.0/.constprop.0),
 * so the calling convention is exactly what the C source says.
 */
#define lab3_call_path noinline __attribute__((__noipa__))

enum lab3_kind {
	LAB3_ADC,
	LAB3_DERIVED,		/* value computed from another channel */
};

struct lab3_calib {
	s32 offset;		/* 0x00, subtracted from the raw reading */
	s32 gain_num;		/* 0x04 */
	s32 gain_den;		/* 0x08 */
	u32 flags;		/* 0x0c */
};

struct lab3_channel_desc {
	const char *label;
	enum lab3_kind kind;
	int source;		/* LAB3_DERIVED: index of the source channel */
	struct lab3_calib calib;/* LAB3_ADC: factory calibration */
};

struct lab3_channel {
	const char *label;
	unsigned int index;
	enum lab3_kind kind;
	struct lab3_calib *calib;	/* owned (ADC) or shared (DERIVED) */
	unsigned int source;
	s32 raw;			/* last raw sample */
	s64 value;			/* last calibrated value, milli-units */
};

struct lab3_hub {
	const char *name;
	unsigned int nr_channels;
	unsigned long polls;
	struct lab3_channel chan[LAB3_NR_CHANNELS];
	struct delayed_work poll_work;
};

static const struct lab3_channel_desc lab3_board[LAB3_NR_CHANNELS] = {
	{ "vin",        LAB3_ADC,     0, { 12, 1000, 4096, 0 } },
	{ "iin",        LAB3_ADC,     0, { -3, 2500, 4096, 0 } },
	{ "vcore",      LAB3_ADC,     0, {  0, 1200, 4096, 0 } },
	{ "board_temp", LAB3_DERIVED, 4, {  0,    0,    0, 0 } },
	{ "tsense",     LAB3_ADC,     0, { 40,  125, 4096, 1 } },
};

/* Global so that the hub can be found from a debugger. */
struct lab3_hub *lab3_hub;

/* Pretend ADC: a deterministic, slowly changing reading. */
static lab3_call_path s32 lab3_adc_sample(struct lab3_hub *hub, unsigned int index)
{
	return 1000 + 37 * index + (hub->polls & 0xf);
}

static lab3_call_path s64 lab3_apply_calib(const struct lab3_calib *calib, s32 raw,
				     unsigned int index)
{
	s64 v;

	/* BUG (reached): calib is NULL for channel 3, see lab3_hub_setup(). */
	v = (s64)(raw - calib->offset) * calib->gain_num;
	if (calib->gain_den == 0) {
		pr_warn_ratelimited("lab3: channel %u has a zero gain denominator\n", index);
		return 0;
	}
	return div_s64(v, calib->gain_den);
}

static lab3_call_path int lab3_read_channel(struct lab3_hub *hub, struct lab3_channel *ch,
				      s64 *out)
{
	unsigned int from = ch->kind == LAB3_DERIVED ? ch->source : ch->index;

	ch->raw = lab3_adc_sample(hub, from);
	*out = lab3_apply_calib(ch->calib, ch->raw, ch->index);
	return 0;
}

static lab3_call_path unsigned int lab3_hub_poll(struct lab3_hub *hub, unsigned int budget)
{
	unsigned int i, done = 0;
	s64 value;

	for (i = 0; i < hub->nr_channels && done < budget; i++) {
		if (lab3_read_channel(hub, &hub->chan[i], &value))
			continue;
		hub->chan[i].value = value;
		done++;
	}
	hub->polls++;
	return done;
}

static void lab3_poll_work(struct work_struct *work)
{
	struct lab3_hub *hub = container_of(to_delayed_work(work), struct lab3_hub, poll_work);

	lab3_hub_poll(hub, LAB3_NR_CHANNELS);
	schedule_delayed_work(&hub->poll_work, msecs_to_jiffies(200));
}

static lab3_call_path int lab3_hub_setup(struct lab3_hub *hub)
{
	unsigned int i;

	for (i = 0; i < LAB3_NR_CHANNELS; i++) {
		const struct lab3_channel_desc *d = &lab3_board[i];
		struct lab3_channel *ch = &hub->chan[i];

		ch->label = d->label;
		ch->index = i;
		ch->kind = d->kind;
		if (d->kind == LAB3_ADC) {
			ch->calib = kmemdup(&d->calib, sizeof(d->calib), GFP_KERNEL);
			if (!ch->calib)
				return -ENOMEM;
		} else {
			/*
			 * BUG: shares the source's calibration, but channels are
			 * set up in index order and the source (4) comes later:
			 * hub->chan[4].calib is still NULL here.
			 */
			ch->source = d->source;
			ch->calib = hub->chan[d->source].calib;
		}
	}
	hub->nr_channels = LAB3_NR_CHANNELS;
	return 0;
}

static int __init lab3_init(void)
{
	struct lab3_hub *hub;
	int ret;

	hub = kzalloc(sizeof(*hub), GFP_KERNEL);
	if (!hub)
		return -ENOMEM;
	hub->name = "lab3-hub0";
	ret = lab3_hub_setup(hub);
	if (ret) {
		kfree(hub);
		return ret;
	}
	lab3_hub = hub;
	INIT_DELAYED_WORK(&hub->poll_work, lab3_poll_work);
	schedule_delayed_work(&hub->poll_work, msecs_to_jiffies(200));
	pr_info("lab3: %s ready, %u channels\n", hub->name, hub->nr_channels);
	return 0;
}

static void __exit lab3_exit(void)
{
	unsigned int i;

	cancel_delayed_work_sync(&lab3_hub->poll_work);
	for (i = 0; i < LAB3_NR_CHANNELS; i++)
		if (lab3_hub->chan[i].kind == LAB3_ADC)
			kfree(lab3_hub->chan[i].calib);
	kfree(lab3_hub);
}

module_init(lab3_init);
module_exit(lab3_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gdbkd lab 3: NULL struct member reached through several calls");
