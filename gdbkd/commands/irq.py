"""kd irq: interrupt descriptors (crash's irq; -s like /proc/interrupts)."""

from . import KdError, command
from ._util import KernelCommand, problem_lines
from ..model.lists import stop_problem
from ._sysstate import kernel, guest_str, symbol_name
from ..model import irq as mirq
from ..model.percpu import possible_cpus

__all__ = ["Irq"]


@command
class Irq(KernelCommand):
    """Interrupts: irq number, irq_desc, chip, hwirq, flow handler, actions (name and
handler), per-CPU counts and affinity (crash's irq). -s prints a summary like
/proc/interrupts (irqs with an action only)."""

    name = "irq"
    json_addresses = frozenset(("desc", "chip", "handle_irq", "action", "handler", "thread_fn"))

    def add_arguments(self, p):
        p.add_argument("-s", dest="summary", action="store_true",
                       help="per-CPU counts like /proc/interrupts")
        p.add_argument("irq", nargs="*", type=int, metavar="IRQ", help="only these irqs")

    def run(self, args):
        k = kernel()
        descs, source, stop = mirq.irq_descs(k)
        cpus = possible_cpus(k)
        want = set(args.irq)
        rows = []
        for irq, desc in descs:
            if want and irq not in want:
                continue
            i = mirq.irq_info(k, irq, desc, cpus)
            if args.summary and not i["actions"]:
                continue
            i["chip_name"] = guest_str(i["chip_name"])
            i["handle_irq_name"] = symbol_name(i["handle_irq"])
            # chips named at print time (GIC: irq_print_chip) have no name: show the symbol
            i["chip_label"] = i["chip_name"] or symbol_name(i["chip"]) or "-"
            for a in i["actions"]:
                a["name"] = guest_str(a["name"])
                a["handler_name"] = symbol_name(a["handler"])
                a["thread_fn_name"] = symbol_name(a["thread_fn"])
            i["counts"] = {str(c): v for c, v in i["counts"].items()}
            rows.append(i)
        missing = want - {r["irq"] for r in rows}
        if missing:
            raise KdError(f"no irq descriptor for irq {', '.join(map(str, sorted(missing)))}")
        problems = [stop_problem(f"irq descriptors ({source})", 0, stop)] if stop else []
        problems += [stop_problem(f"action chain of irq {r['irq']} (irq_desc.action)", r["desc"],
                                  r["actions_stop"], len(r["actions"]))
                     for r in rows if r.get("actions_stop")]
        return {"source": source, "stop": stop, "cpus": cpus, "irqs": rows,
                "problems": [p.to_json() for p in problems]}

    def render(self, d, args):
        lines = []
        if args.summary:
            lines.append("     " + "".join(f"{'CPU' + str(c):>11}" for c in d["cpus"]))
            for r in d["irqs"]:
                counts = "".join(f"{r['counts'].get(str(c), 0):>11}" for c in d["cpus"])
                names = ", ".join(a["name"] or "-" for a in r["actions"])
                lines.append(f"{r['irq']:>4}:{counts}  {r['chip_label']:<10} {r['hwirq']:>4}  {names}")
        else:
            lines.append(" IRQ   IRQ_DESC/_DATA      CHIP        HWIRQ  FLOW HANDLER / ACTIONS")
            for r in d["irqs"]:
                aff = ",".join(map(str, r["affinity"])) if r["affinity"] is not None else "-"
                lines.append(f"{r['irq']:>4}  {r['desc']:016x}  {r['chip_label']:<10} {r['hwirq']:>6}  "
                             f"{r['handle_irq_name'] or hex(r['handle_irq'])}  total {r['total']}  "
                             f"affinity {aff}")
                for a in r["actions"]:
                    h = a["handler_name"] or f"{a['handler']:#x}"
                    lines.append(f"{'':>26}\"{a['name']}\"  {h}"
                                 + (f"  thread {a['thread_fn_name'] or hex(a['thread_fn'])}"
                                    if a["thread_fn"] else ""))
        return "\n".join(lines + problem_lines(self.name, d["problems"]))
