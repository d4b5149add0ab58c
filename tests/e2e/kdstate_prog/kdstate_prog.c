/*
 * A freestanding arm64 program (no libc) that sets up state for the kd system-state
 * tests and then sleeps: fd 3 a file on the tmpfs the test mounted (mapped shared),
 * an anonymous mapping with three touched pages, a pipe (fds 4, 5), a TCP socket
 * listening on 127.0.0.1:4242 (fd 6), a UDP socket bound to 127.0.0.1:5353 (fd 7)
 * and a unix stream socket (fd 8). It prints
 * "KDSTATE-PROG file-map <hex> anon-map <hex>" and sleeps.
 * Build: aarch64-linux-gnu-gcc -O2 -static -nostdlib -ffreestanding -fno-stack-protector
 */
typedef unsigned long u64;

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
}

#define AT_FDCWD -100
#define SYS_openat 56
#define SYS_write 64
#define SYS_pipe2 59
#define SYS_mmap 222
#define SYS_socket 198
#define SYS_bind 200
#define SYS_listen 201
#define SYS_nanosleep 101
#define SYS_exit 93

struct sockaddr_in { unsigned short family; unsigned short port; unsigned int addr; char zero[8]; };

static void put(const char *s)
{
	long n = 0;
	while (s[n])
		n++;
	sys6(SYS_write, 1, (long)s, n, 0, 0, 0);
}

static void puthex(u64 v)
{
	char buf[19];
	int i;
	buf[0] = '0';
	buf[1] = 'x';
	for (i = 0; i < 16; i++)
		buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
	buf[18] = 0;
	put(buf);
}

static void fail(const char *what)
{
	put("KDSTATE-PROG-FAILED ");
	put(what);
	put("\n");
	sys6(SYS_exit, 1, 0, 0, 0, 0, 0);
}

void _start(void)
{
	static char page[8192];
	int fds[2];
	long fd, m, a, s;
	struct sockaddr_in sin = { 2, 0x9210 /* htons(4242) */, 0x0100007f, {0} };
	struct sockaddr_in uin = { 2, 0xe914 /* htons(5353) */, 0x0100007f, {0} };
	long ts[2] = { 100000, 0 };
	int i;

	fd = sys6(SYS_openat, AT_FDCWD, (long)"/tmp/kds/data", 0102 /* O_RDWR|O_CREAT */, 0644, 0, 0);
	if (fd != 3)
		fail("open");
	for (i = 0; i < 8192; i++)
		page[i] = 'k';
	sys6(SYS_write, fd, (long)page, 8192, 0, 0, 0);
	m = sys6(SYS_mmap, 0, 8192, 3 /* RW */, 1 /* MAP_SHARED */, fd, 0);
	if (m < 0 && m > -4096)
		fail("mmap file");
	a = sys6(SYS_mmap, 0, 16 * 4096, 3, 0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */, -1, 0);
	if (a < 0 && a > -4096)
		fail("mmap anon");
	((volatile char *)a)[0] = 1;
	((volatile char *)a)[5 * 4096] = 1;
	((volatile char *)a)[9 * 4096] = 1;
	((volatile char *)m)[0] = 'K';
	if (sys6(SYS_pipe2, (long)fds, 0, 0, 0, 0, 0) || fds[0] != 4)
		fail("pipe");
	s = sys6(SYS_socket, 2, 1, 0, 0, 0, 0);
	if (s != 6 || sys6(SYS_bind, s, (long)&sin, sizeof(sin), 0, 0, 0) ||
	    sys6(SYS_listen, s, 4, 0, 0, 0, 0))
		fail("tcp socket");
	s = sys6(SYS_socket, 2, 2, 0, 0, 0, 0);
	if (s != 7 || sys6(SYS_bind, s, (long)&uin, sizeof(uin), 0, 0, 0))
		fail("udp socket");
	if (sys6(SYS_socket, 1, 1, 0, 0, 0, 0) != 8)
		fail("unix socket");
	put("KDSTATE-PROG file-map ");
	puthex(m);
	put(" anon-map ");
	puthex(a);
	put("\n");
	for (;;)
		sys6(SYS_nanosleep, (long)ts, 0, 0, 0, 0, 0);
}
