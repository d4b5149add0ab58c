/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Lab 4 - the user/kernel interface of /dev/lab4_ring, shared by the driver
 * (lab4_ring.c) and the freestanding guest program (lab4_client.c).
 */
#ifndef LAB4_RING_H
#define LAB4_RING_H

#ifdef __KERNEL__
#include <linux/ioctl.h>
#include <linux/types.h>
#else
/* No libc headers for arm64 on the host: the asm-generic ioctl encoding. */
typedef unsigned int __u32;
typedef unsigned long long __u64;
#define _IOC(dir, type, nr, size) \
	(((dir) << 30) | ((size) << 16) | ((type) << 8) | (nr))
#define _IO(type, nr)		_IOC(0U, (type), (nr), 0U)
#define _IOR(type, nr, T)	_IOC(2U, (type), (nr), sizeof(T))
#endif

#define LAB4_DEVICE	"/dev/lab4_ring"

struct lab4_stat {
	__u64 len;		/* bytes currently buffered */
	__u64 size;		/* buffer capacity (0: no buffer yet) */
	__u32 checksum;		/* 32-bit sum of the buffered bytes */
	__u32 resets;		/* how many LAB4_IOC_RESET so far */
};

#define LAB4_IOC_MAGIC	'R'
#define LAB4_IOC_STAT	_IOR(LAB4_IOC_MAGIC, 1, struct lab4_stat)
#define LAB4_IOC_RESET	_IO(LAB4_IOC_MAGIC, 2)

#endif
