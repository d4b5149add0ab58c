"""Buckets of triage rows by signature, and their text, JSON and static HTML renderings.

A bucket is every dump with one signature: count, the dumps (oldest crash first), the first
and last crash time, and a representative title (the oldest dump's: titles of one signature
differ at most in what the signature leaves out). Buckets are ordered by count, then by first
crash. Error rows are kept apart, in the order given.

The HTML page is one self-contained file (no script, no external resource): a summary, the
bucket table, a table of every dump with its facts, each deadlock's wait-for graph as inline
SVG (Graphviz ``dot -Tsvg`` of ``kd deadlock --dot``), and the error rows.
"""

import html
import json
import shutil
import subprocess
import time

__all__ = ["buckets", "result", "render_text", "render_json", "render_html"]


def _when(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if isinstance(t, int) else "?"


def buckets(rows) -> list:
    groups = {}
    for r in rows:
        if r.get("ok"):
            groups.setdefault(r["signature"], []).append(r)
    out = []
    for sig, rs in groups.items():
        rs = sorted(rs, key=lambda r: (r.get("time") or 0, r["dump"]))
        out.append({"signature": sig, "kind": rs[0]["kind"], "title": rs[0]["title"], "count": len(rs),
                    "dumps": [r["dump"] for r in rs], "first": rs[0].get("time"), "last": rs[-1].get("time"),
                    "frames": rs[0]["frames"], "releases": sorted({r["release"] for r in rs})})
    return sorted(out, key=lambda b: (-b["count"], b["first"] or 0, b["signature"]))


def result(rows) -> dict:
    """The whole triage result: every row, the buckets, the error rows."""
    return {"dumps": rows, "buckets": buckets(rows), "errors": [r for r in rows if not r.get("ok")]}


def render_json(res) -> str:
    return json.dumps(res, sort_keys=False)


def _n(count, word):
    return f"{count} {word}{'s' if count != 1 else ''}"


def _summary(res) -> str:
    bs, errs = res["buckets"], res["errors"]
    n = sum(b["count"] for b in bs)
    return f"{_n(len(bs), 'bucket')}, {_n(n, 'dump')} triaged" + (f", {_n(len(errs), 'error')}" if errs else "")


def render_text(res) -> str:
    bs, errs = res["buckets"], res["errors"]
    damaged = {r["dump"]: r.get("damaged_lists") or [] for r in res["dumps"] if r.get("ok")}
    L = [_summary(res)]
    if bs:
        L.append(f"{'COUNT':>5}  {'SIGNATURE':16}  {'FIRST (UTC)':19}  {'LAST (UTC)':19}  TITLE")
    for b in bs:
        L.append(f"{b['count']:5}  {b['signature']:16}  {_when(b['first']):19}  {_when(b['last']):19}  {b['title']}")
        for d in b["dumps"]:
            L.append(f"{'':7}{d}")
            L += [f"{'':9}damaged: {line}" for line in damaged.get(d, ())]
    if errs:
        L.append("ERRORS:")
        L += [f"  {r['error'] if r['dump'] in r['error'] else r['dump'] + ': ' + r['error']}" for r in errs]
    return "\n".join(L)


_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #e8edf3; }
td.num { text-align: right; }
code, .sig { font-family: monospace; }
tr.err td { background: #fde8e8; }
.graph { border: 1px solid #ddd; margin: 0.5em 0 1.5em; padding: 0.5em; overflow-x: auto; }
.graph svg { max-width: 100%; height: auto; }
"""


def _svg(dot: str):
    """Inline SVG of a DOT graph (Graphviz), or None without Graphviz."""
    if not dot or not shutil.which("dot"):
        return None
    p = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        return None
    s = p.stdout
    return s[s.find("<svg"):] if "<svg" in s else None


def render_html(res, title="gdbkd triage") -> str:
    e = html.escape
    bs, rows, errs = res["buckets"], res["dumps"], res["errors"]
    H = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
         f"<h1>{e(title)}</h1>",
         f'<p id="summary">{e(_summary(res))}.</p>',
         "<h2>Buckets</h2>", '<table id="buckets"><thead><tr><th>Count</th><th>Signature</th><th>Title</th>'
         "<th>First (UTC)</th><th>Last (UTC)</th><th>Release</th><th>Dumps</th></tr></thead><tbody>"]
    for b in bs:
        H.append(f'<tr><td class="num">{b["count"]}</td><td class="sig">{e(b["signature"])}</td>'
                 f'<td>{e(b["title"])}</td><td>{_when(b["first"])}</td><td>{_when(b["last"])}</td>'
                 f'<td>{e(", ".join(b["releases"]))}</td><td>{"<br>".join(e(d) for d in b["dumps"])}</td></tr>')
    H.append("</tbody></table>")
    H += ["<h2>Dumps</h2>", '<table id="dumps"><thead><tr><th>Dump</th><th>Title</th><th>Signature</th>'
          "<th>Crash time (UTC)</th><th>Release</th><th>Panic task</th><th>Taint</th><th>Modules</th>"
          "<th>Frames</th></tr></thead><tbody>"]
    for r in rows:
        if not r.get("ok"):
            H.append(f'<tr class="err"><td>{e(r["dump"])}</td><td colspan="8">error: {e(r["error"])}</td></tr>')
            continue
        t = r.get("panic_task")
        task = f'{e(t["comm"])} (pid {t["pid"]})' if t else "—"
        dl = "".join(f"<br>damaged: {e(x)}" for x in r.get("damaged_lists") or [])
        H.append(f'<tr><td>{e(r["dump"])}</td><td>{e(r["title"])}{dl}</td><td class="sig">{e(r["signature"])}</td>'
                 f'<td>{_when(r.get("time"))}</td><td>{e(r["release"])}</td><td>{task}</td>'
                 f'<td>{e(r.get("taint") or "")}</td><td>{e(", ".join(r.get("modules", [])))}</td>'
                 f'<td><code>{"<br>".join(e(f) for f in r["frames"])}</code></td></tr>')
    H.append("</tbody></table>")
    graphs = [r for r in rows if r.get("ok") and r.get("deadlock_dot")]
    if graphs:
        H.append("<h2>Wait-for graphs</h2>")
        for r in graphs:
            svg = _svg(r["deadlock_dot"])
            H.append(f'<h3>{e(r["dump"])}: {e(r["title"])}</h3>')
            H.append(f'<div class="graph">{svg}</div>' if svg else
                     f'<pre class="graph">{e(r["deadlock_dot"])}</pre>')
    if errs:
        H += ["<h2>Errors</h2>", '<table id="errors"><thead><tr><th>Dump</th><th>Error</th></tr></thead><tbody>']
        H += [f'<tr class="err"><td>{e(r["dump"])}</td><td>{e(r["error"])}</td></tr>' for r in errs]
        H.append("</tbody></table>")
    H.append("</body></html>")
    return "\n".join(H) + "\n"
