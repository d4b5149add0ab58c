// SPDX-License-Identifier: GPL-2.0
/*
 * Lab 4 - guest program that drives /dev/lab4_ring.
 *
 * Freestanding arm64: no libc (the guest has only busybox, the host no arm64
 * libc), so it has its own _start and makes system calls with `svc #0`.
 * Build: aarch64-linux-gnu-gcc -static -nostdlib -ffreestanding
 *        -fno-stack-protector -O2 -o lab4_client lab4_client.c
 *
 * Sequence: open, write a message, STAT (fine), RESET, STAT (oopses the
 * kernel in lab4_checksum: this process is the one that dies).
 */
#include "lab4_ring.h"

#define NR_ioctl	29
#define NR_openat	56
#define NR_close	57
#define NR_write	64
#define NR_exit_group	94
#define AT_FDCWD	-100
#define O_RDWR		2

static long lab4_syscall(long nr, long a, long b, long c, long d)
{
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;

	__asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
	return x0;
}

static unsigned long slen(const char *s)
{
	unsigned long n = 0;

	while (s[n])
		n++;
	return n;
}

static void puts_(const char *s)
{
	lab4_syscall(NR_write, 1, (long)s, slen(s), 0);
}

static void putnum(unsigned long v, int base)
{
	char buf[24];
	int i = sizeof(buf);

	do {
		buf[--i] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v && i > 0);
	lab4_syscall(NR_write, 1, (long)(buf + i), sizeof(buf) - i, 0);
}

static void report(const char *what, long ret, const struct lab4_stat *st)
{
	puts_("lab4_client: ");
	puts_(what);
	if (ret < 0) {
		puts_(" failed, errno ");
		putnum(-ret, 10);
		puts_("\n");
		return;
	}
	if (st) {
		puts_(" len=");
		putnum(st->len, 10);
		puts_(" size=");
		putnum(st->size, 10);
		puts_(" resets=");
		putnum(st->resets, 10);
		puts_(" checksum=0x");
		putnum(st->checksum, 16);
	}
	puts_("\n");
}

static __attribute__((noreturn)) void lab4_exit(int code)
{
	for (;;)
		lab4_syscall(NR_exit_group, code, 0, 0, 0);
}

int lab4_main(void)
{
	static const char msg[] = "sensor frame 0001: 12 34 56 78";
	struct lab4_stat st;
	long fd, ret;

	fd = lab4_syscall(NR_openat, AT_FDCWD, (long)LAB4_DEVICE, O_RDWR, 0);
	if (fd < 0) {
		report("open " LAB4_DEVICE, fd, 0);
		return 1;
	}
	ret = lab4_syscall(NR_write, fd, (long)msg, sizeof(msg) - 1, 0);
	report("write", ret, 0);
	ret = lab4_syscall(NR_ioctl, fd, LAB4_IOC_STAT, (long)&st, 0);
	report("stat", ret, &st);
	ret = lab4_syscall(NR_ioctl, fd, LAB4_IOC_RESET, 0, 0);
	report("reset", ret, 0);
	/* The driver forgot to clear len on reset: this ioctl oopses. */
	ret = lab4_syscall(NR_ioctl, fd, LAB4_IOC_STAT, (long)&st, 0);
	report("stat after reset", ret, &st);
	lab4_syscall(NR_close, fd, 0, 0, 0);
	return 0;
}

void lab4_start_c(void)
{
	lab4_exit(lab4_main());
}

/* Entry point: clear the frame pointer and link register, call into C. */
__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	mov x29, #0\n"
	"	mov x30, #0\n"
	"	bl lab4_start_c\n"
	"	b .\n");
