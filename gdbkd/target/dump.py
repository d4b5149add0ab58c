"""The kernel's view of a dump: virtual memory, KASLR, tasks as threads with registers.

:class:`Dump` joins a physical dump (:mod:`gdbkd.dump`), the arm64 page tables
(:mod:`gdbkd.arm64`) and, once a vmlinux is attached, the struct offsets gdb
reports for it (:mod:`gdbkd.target.offsets`). Nothing here imports gdb.

Tasks. ``init_task.tasks`` links every thread-group leader except the idle
tasks; each leader's threads hang off ``signal->thread_head`` through
``task->thread_node`` (v3.14+; older kernels: ``task->thread_group``). The
idle task of each online CPU is ``per_cpu(runqueues, cpu).idle``
(``init_task`` for CPU 0).

Thread ids (what gdb shows as ``Thread N``): a task's pid; the idle tasks,
which all have pid 0, get ``IDLE_TID_BASE + cpu`` (4194304 = PID_MAX_LIMIT,
above any real pid), because gdb needs a positive, unique tid.

Registers. A task running on a CPU at the crash gets that CPU's NT_PRSTATUS
(and NT_FPREGSET when present); every other task gets what cpu_switch_to saved
in ``task->thread.cpu_context`` (x19-x29, sp, pc). Notes are matched to CPUs:
QEMU writes one per vCPU with ``pr_pid = cpu index + 1``; the kernel's kdump
notes carry ``pr_pid`` = the pid running there and come in CPU order, so they
are matched by the stack pointer (a task stack → that task; a CPU's IRQ stack
→ that CPU's ``rq->curr``), then by pid, then by order. The task current on a
CPU is ``per_cpu(runqueues, cpu).curr``. The crashing CPU is ``panic_cpu``
(set by panic() and by crash_kexec(), v4.5+).
"""

import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GdbkdError
from ..dump import open_physical, parse_vmcoreinfo, DumpError, NT_PRSTATUS, NT_FPREGSET
from ..dump.vmcoreinfo import vmci_hex, vmci_int, NOTE_SOURCE
from ..arm64.mmu import mmu_from_vmcoreinfo, M64
from .offsets import kernel_offsets, vmlinux_build_id
from ..arm64.regs import parse_prstatus, parse_fpregset, regs_from_cpu_context, PRSTATUS_SIZE
from ..model.kernel import Kernel
from ..model.layout import RecordedTypes
from ..model.reader import DumpReader, MemoryFault
from ..model.tasks import (Task, TaskList, task_list, active_tasks, read_task, thread_size,
                           IDLE_TID_BASE)
from ..model import percpu

__all__ = ["Dump", "Task", "Thread", "IDLE_TID_BASE", "UNREADABLE_TID_BASE"]

EM_AARCH64 = 183
#: thread id of the task running on CPU n when its task_struct cannot be read
#: (above the idle tasks' IDLE_TID_BASE + cpu, cpu < 4096)
UNREADABLE_TID_BASE = IDLE_TID_BASE + 4096


@dataclass
class Thread:
    tid: int
    task: Task
    regs: list = field(repr=False)
    active_cpu: int = -1     # CPU it was running on at the crash (registers from NT_PRSTATUS)


def _check_not_a_dump(vmlinux):
    """A dump file where the vmlinux belongs (``PART1 PART2 PART3`` with the vmlinux
    forgotten) gets its own error, not one about the remaining parts."""
    try:
        with open(vmlinux, "rb") as f:
            head = f.read(18)
    except OSError:
        return                      # attach_vmlinux says what is wrong with it
    is_core = head[:4] == b"\x7fELF" and len(head) == 18 and struct.unpack_from("<H", head, 16)[0] == 4
    if head[:8] == b"KDUMP   " or head[:12] == b"makedumpfile" or is_core:
        raise GdbkdError(f"{vmlinux} is a dump, not a vmlinux: the vmlinux comes last "
                         f"(DUMP VMLINUX, or PART1 PART2 ... VMLINUX)")


class Dump:
    """A kernel crash dump opened read-only; see the module docstring."""

    def __init__(self, path, vmlinux=None):
        """``path``: a dump file, or the list of parts of a makedumpfile --split dump."""
        if isinstance(path, (list, tuple)):
            self.paths = [str(p) for p in path]
            path = self.paths if len(self.paths) != 1 else self.paths[0]
        else:
            self.paths = [str(path)]
        self.path = " ".join(self.paths)
        if vmlinux is not None:
            _check_not_a_dump(vmlinux)
        self.phys = open_physical(path)
        try:
            try:
                self._init_dump(vmlinux)
            except DumpError as e:      # a VMCOREINFO or note problem: say which dump
                if self.path in str(e):
                    raise
                raise DumpError(f"{self.path}: {e}") from None
            if vmlinux is not None:
                self.attach_vmlinux(vmlinux)
        except BaseException:
            self.phys.close()
            raise

    # -- dump-only facts -------------------------------------------------------------
    def _init_dump(self, vmlinux=None):
        p = self.phys
        m = p.machine
        if p.format == "elf" and m not in ("EM_AARCH64", EM_AARCH64):
            raise GdbkdError(f"{self.path} is not an arm64 dump (ELF machine {m})")
        if p.format != "elf" and m not in ("aarch64", "arm64", "Unknown", ""):
            raise GdbkdError(f"{self.path} is not an arm64 dump (machine {m})")
        #: the VMCOREINFO text (bytes) and where it came from (one line)
        self.vmcoreinfo_raw = p.vmcoreinfo_raw
        self.vmcoreinfo_source = NOTE_SOURCE
        if not parse_vmcoreinfo(self.vmcoreinfo_raw):
            # no note (QEMU writes one only when the guest's qemu_fw_cfg driver gave it
            # the text): the kernel's own copy in its RAM (dump/ramvmcoreinfo.py)
            from ..dump.ramvmcoreinfo import find_in_ram
            found = find_in_ram(p, vmlinux)
            if found is None:
                raise GdbkdError(f"{self.path} has no VMCOREINFO: no note (QEMU dumps carry it only "
                                 f"when the guest loaded qemu_fw_cfg and QEMU ran with -device "
                                 f"vmcoreinfo) and no VMCOREINFO text in its RAM")
            self.vmcoreinfo_raw, self.vmcoreinfo_source = found.raw, str(found)
        self.vmcoreinfo = parse_vmcoreinfo(self.vmcoreinfo_raw)
        if "NUMBER(kimage_voffset)" not in self.vmcoreinfo:
            raise GdbkdError(f"{self.path} is not an arm64 kernel dump (VMCOREINFO has no "
                             f"kimage_voffset)")
        notes = p.prstatus_notes()
        if notes and len(notes[0].desc) != PRSTATUS_SIZE:
            raise GdbkdError(f"{self.path} is not an arm64 dump (NT_PRSTATUS of "
                             f"{len(notes[0].desc)} bytes)")
        self.osrelease = self.vmcoreinfo.get("OSRELEASE", "")
        self.build_id = self.vmcoreinfo.get("BUILD-ID", "").lower()
        self.kaslr_offset = vmci_hex(self.vmcoreinfo, "KERNELOFFSET", 0)
        self.page_size = vmci_int(self.vmcoreinfo, "PAGESIZE", 4096)
        self.producer = self._producer()
        self.mmu = mmu_from_vmcoreinfo(p, self.vmcoreinfo, None, self.osrelease)
        self.vmlinux = None
        self.offsets = None
        self._threads = None
        self._cpu_notes = None
        #: what could not be read while building the thread list (one line each)
        self.thread_problems = []

    def _producer(self):
        p = self.phys
        if p.format == "elf":
            return "kernel" if p.has_virtual else "qemu"
        return "qemu" if not p.utsname.get("sysname") else "kernel"

    @property
    def format(self):
        return self.phys.format

    def close(self):
        self.phys.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- memory ---------------------------------------------------------------------------
    def read(self, va: int, size: int) -> bytes:
        """Kernel virtual memory; raises DumpError/AddressNotMapped (GdbkdError) with the reason."""
        return self.mmu.read(va, size)

    def u64(self, va):
        return struct.unpack("<Q", self.read(va, 8))[0]

    def u32(self, va):
        return struct.unpack("<I", self.read(va, 4))[0]

    def i32(self, va):
        return struct.unpack("<i", self.read(va, 4))[0]

    # -- vmlinux ----------------------------------------------------------------------------
    def attach_vmlinux(self, vmlinux):
        """Check that ``vmlinux`` built this kernel, then learn its offsets and image range."""
        vmlinux = str(vmlinux)
        if not Path(vmlinux).is_file():
            raise GdbkdError(f"vmlinux {vmlinux} does not exist")
        bid = vmlinux_build_id(vmlinux)
        if self.build_id and bid and bid.lower() != self.build_id:
            raise GdbkdError(f"wrong vmlinux: its build-id {bid[:12]}… differs from the dump's "
                             f"{self.build_id[:12]}… (kernel {self.osrelease})")
        off = kernel_offsets(vmlinux, bid)
        self.vmlinux = vmlinux
        self.offsets = off
        from ..arm64.pac import PacStripper
        self.kernel = Kernel(DumpReader(self, PacStripper.for_dump(self)),
                             RecordedTypes.from_offsets(off),
                             self.sym)
        sym = off["symbols"]
        # The image's runtime range, for the translation fast path.
        if sym.get("_text") and sym.get("_end"):
            self.mmu.image_range = (sym["_text"] + self.kaslr_offset, sym["_end"] + self.kaslr_offset)
            self.mmu.verify_image_fastpath()
        self._check_banner(vmlinux, sym.get("linux_banner"))
        self._threads = None

    def _check_banner(self, vmlinux, banner_addr):
        """The vmlinux's linux_banner must name the dump's OSRELEASE; without a BUILD-ID
        in VMCOREINFO (before v5.9) it must also equal the banner in the dump."""
        if not banner_addr:
            return
        from ..elfsyms import file_bytes_at
        raw = file_bytes_at(vmlinux, banner_addr, 160)
        if raw is None:
            return
        in_file = raw.split(b"\0")[0]
        if self.osrelease and not in_file.startswith(f"Linux version {self.osrelease} ".encode()):
            raise GdbkdError(f"wrong vmlinux: the dump is of kernel {self.osrelease}, the vmlinux "
                             f"says '{in_file[:60].decode('ascii', 'replace').strip()}'")
        if self.build_id:
            return
        try:
            in_dump = self.read(banner_addr + self.kaslr_offset, 160).split(b"\0")[0]
        except GdbkdError:
            return
        if in_file != in_dump:
            raise GdbkdError(f"wrong vmlinux: the dump's kernel is "
                             f"'{in_dump[:80].decode('ascii', 'replace').strip()}', the vmlinux is "
                             f"'{in_file[:80].decode('ascii', 'replace').strip()}'")

    def _need_vmlinux(self):
        if self.offsets is None:
            raise GdbkdError("this needs the dump's vmlinux (attach_vmlinux)")

    def sym(self, name):
        """Runtime (KASLR-relocated) address of a symbol the offsets list knows."""
        self._need_vmlinux()
        a = self.offsets["symbols"].get(name)
        return None if a is None else (a + self.kaslr_offset) & M64

    # -- per-CPU ----------------------------------------------------------------------------
    def online_cpus(self):
        """CPUs present in the machine (``__cpu_present_mask``).

        Not the online mask: panic() and crash_kexec() stop the other CPUs and
        clear their online bits before the dump is taken (gdbkd/model/percpu.py).
        """
        self._need_vmlinux()
        return percpu.present_cpus(self.kernel)

    def per_cpu_addr(self, symbol_addr, cpu):
        return percpu.per_cpu_addr(self.kernel, symbol_addr, cpu)

    @property
    def crashed_cpu(self):
        """The CPU that panicked (``panic_cpu``), or None when the dump is not of a panic.

        A dump taken while gdb held the guest at a ``panic``/``die``/``crash_kexec``
        breakpoint (gdbkd run --dump-on-crash) has no panic_cpu yet: then the CPU whose
        saved pc sits at the entry of one of those functions is the crashing one."""
        if self.offsets is None:
            return None
        a = self.sym("panic_cpu")
        try:
            v = self.i32(a) if a is not None else -1
        except GdbkdError:
            v = -1
        if v >= 0:
            return v
        traps = [t for t in (self.sym(n) for n in ("die", "panic", "vpanic", "crash_kexec", "__crash_kexec"))
                 if t is not None]
        try:
            notes = self.cpu_notes()
        except GdbkdError:
            return None
        for cpu, st in sorted(notes.items()):
            # gdb (DWARF) puts the symbol after the patchable-entry NOPs: allow a little before it
            if any(t - 0x10 <= st.pc < t + 0x80 for t in traps):
                return cpu
        return None

    @property
    def crashed_thread(self):
        cpu = self.crashed_cpu
        if cpu is None:
            return None
        for t in self.threads():
            if t.active_cpu == cpu:
                return t
        return None

    @property
    def crashed_pid(self):
        t = self.crashed_thread
        return None if t is None else t.task.pid

    # -- tasks --------------------------------------------------------------------------------
    def tasks(self):
        """Every task (gdbkd/model/tasks.py: the same list kd ps shows), sorted by pid;
        ``problems`` on the list says which parts could not be read."""
        self._need_vmlinux()
        try:
            return task_list(self.kernel)
        except MemoryFault as e:
            raise GdbkdError(f"cannot read the task list: {e}") from None

    # -- CPUs at the crash -----------------------------------------------------------------
    def cpu_notes(self):
        """{cpu: regs} from the NT_PRSTATUS (+NT_FPREGSET) notes; see the module docstring."""
        if self._cpu_notes is not None:
            return self._cpu_notes
        notes = self.phys.notes
        pr = []
        for i, n in enumerate(notes):
            if n.name == "CORE" and n.type == NT_PRSTATUS:
                st = parse_prstatus(n.desc)
                nxt = notes[i + 1] if i + 1 < len(notes) else None
                if nxt is not None and nxt.name == "CORE" and nxt.type == NT_FPREGSET:
                    parse_fpregset(nxt.desc, st.regs)
                pr.append(st)
        result = {}
        if self.producer == "qemu":
            for i, st in enumerate(pr):
                cpu = st.pid - 1
                if not 0 <= cpu < 4096 or cpu in result:
                    self.thread_problems.append(
                        f"CPU note {i} (NT_PRSTATUS) has pr_pid {st.pid}, not QEMU's CPU "
                        f"number + 1: taken as CPU {i} by its order")
                    cpu = i
                result[cpu] = st
        else:
            result = self._match_kernel_notes(pr)
        self._cpu_notes = result
        return result

    def _match_kernel_notes(self, pr):
        tasks = self.tasks()
        ts = thread_size(self.kernel)
        online = self.online_cpus()
        irq = {}
        if self.sym("irq_stack_ptr"):
            for c in online:
                try:
                    irq[c] = self.u64(self.per_cpu_addr(self.sym("irq_stack_ptr"), c))
                except GdbkdError:
                    pass
        result = {}
        for i, st in enumerate(pr):
            cpu = None
            for t in tasks:
                if t.stack and t.stack <= st.sp < t.stack + ts:
                    cpu = t.idle_cpu if t.idle_cpu is not None else t.cpu
                    break
            if cpu is None:
                cpu = next((c for c, base in irq.items() if base <= st.sp < base + ts), None)
            if cpu is None and st.pid > 0:
                cpu = next((t.cpu for t in tasks if t.pid == st.pid), None)
            if cpu is None or cpu in result:
                cpu = online[i] if i < len(online) else None
            if cpu is not None:
                result[cpu] = st
        return result

    def first_thread(self):
        """``threads()[0]`` (the crashed task), without walking the task list when that
        is cheap and certain: a QEMU dump (its CPU notes are numbered by CPU, where a
        kdump's are matched to CPUs through the task list) whose crashed CPU ran a
        readable task that is not an idle task. gdbkd core connects gdb with this
        one thread: on a 10,000-task dump the whole list takes longer to read than
        gdb takes to load the vmlinux. Otherwise it is ``threads()[0]``.
        (A crashed task missing from the task list would be thread 1 here but not
        in ``threads()``, which gives the CPU its registers only.)"""
        if self._threads is None and self.producer == "qemu":
            try:
                cpu = self.crashed_cpu
                notes = self.cpu_notes()
                addr = active_tasks(self.kernel).get(cpu) if cpu in notes else None
                t = read_task(self.kernel, addr) if addr else None
            except (GdbkdError, IndexError):
                t = None
            if t is not None and t.pid > 0:
                t.active_cpu = cpu
                return Thread(tid=t.tid, task=t, regs=list(notes[cpu].regs), active_cpu=cpu)
        return self.threads()[0]

    def threads(self):
        """All tasks as gdb threads (tid, registers), crashed task first.

        What cannot be read is left out and said in :attr:`thread_problems`: an
        unreadable task; a CPU whose running task cannot be read still gets a
        thread (tid UNREADABLE_TID_BASE + cpu) with its registers from the notes.
        Raises GdbkdError only when there is not one thread to show."""
        if self._threads is not None:
            return self._threads
        problems = self.thread_problems
        try:
            tasks = self.tasks()
        except (GdbkdError, IndexError) as e:
            tasks = TaskList([], [str(e)])
        problems += tasks.problems
        try:
            notes = self.cpu_notes()
        except (GdbkdError, IndexError) as e:
            problems.append(f"CPU notes could not be matched to CPUs: {e}")
            notes = {}
        try:
            current = {addr: cpu for cpu, addr in active_tasks(self.kernel).items() if cpu in notes}
        except (GdbkdError, IndexError) as e:
            problems.append(f"the tasks running on each CPU could not be read: {e}")
            current = {}
        out = []
        for t in tasks:
            cpu = current.get(t.addr, -1)
            if cpu >= 0:
                regs = list(notes[cpu].regs)
            else:
                regs = regs_from_cpu_context(t.fields.get("thread.cpu_context", b""))
            out.append(Thread(tid=t.tid, task=t, regs=regs, active_cpu=cpu))
        running = {th.active_cpu for th in out}
        for cpu in sorted(set(notes) - running):
            addr = next((a for a, c in current.items() if c == cpu), 0)
            problems.append(f"CPU {cpu}'s running task" + (f" {addr:#x}" if addr else "")
                            + " could not be read: its thread has the CPU's registers only")
            t = Task(addr, {"pid": 0, "tgid": 0, "comm": b"<unreadable>", "flags": 0, "cpu": cpu})
            t.active_cpu = cpu
            out.append(Thread(tid=UNREADABLE_TID_BASE + cpu, task=t, regs=list(notes[cpu].regs),
                              active_cpu=cpu))
        if not out:
            raise GdbkdError("no thread to show: " + "; ".join(problems[:3]))
        crashed = self.crashed_cpu
        out.sort(key=lambda th: 0 if (crashed is not None and th.active_cpu == crashed) else 1)
        self._threads = out
        return out
