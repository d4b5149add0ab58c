"""Kernel trees and NULL-terminated lists without gdb: rbtree, xarray/radix tree, maple tree, hlist.

Each walker takes a :class:`gdbkd.model.kernel.Kernel` and the address of the
root, and returns a :class:`TreeWalk`: ``entries`` in index (or in-order)
order and ``stop``, a one-line reason when the walk could not finish (an
unreadable node, a loop, a node of an unknown type), like
:func:`gdbkd.model.lists.walk_list` for ``list_head`` lists.

Layouts, probed through ``k.layout`` rather than assumed:

* ``struct rb_node`` {``__rb_parent_color``, ``rb_right``, ``rb_left``} and
  ``struct rb_root`` {``rb_node``}: unchanged from 2.6.x through 6.12.
  ``rb_root_cached`` (4.14+) begins with its ``rb_root``.
* ``struct xarray`` {``xa_lock``, ``xa_flags``, ``xa_head``} and
  ``struct xa_node`` {``shift``, ``slots[64]``}: the XArray (4.20, commit
  f8d5d0cc145c); ``struct radix_tree_root`` has been the XArray since then
  (``#define radix_tree_root xarray``), so "radix" walks the same way on 5.10,
  6.1 and 6.12. Internal entries (include/linux/xarray.h): a node pointer is
  ``node | 2`` (> 4096), a sibling ``(offset << 2) | 2``, the retry entry
  ``0x402``, the zero entry ``0x406``; value entries have bit 0 set.
* the maple tree (6.1, commit 54a611b60590): ``struct maple_tree``
  {``ma_root``}; an encoded node is ``node | (type << 3) | 2`` with the node
  256-byte aligned; types ``maple_leaf_64`` 1, ``maple_range_64`` 2,
  ``maple_arange_64`` 3 (``maple_dense`` 0 is not used by the kernel's trees).
  Range nodes: ``struct maple_range_64`` {``parent``, ``pivot[15]``,
  ``slot[16]``, ``meta.end``}; allocation-range nodes ``struct maple_arange_64``
  {``parent``, ``pivot[9]``, ``slot[10]``, ``gap[10]``, ``meta.end``}. The
  number of used slots follows ``ma_data_end()`` (lib/maple_tree.c): the
  metadata end for arange nodes and for range nodes whose last pivot is 0,
  else all pivots (one fewer when the last pivot is the node's maximum).
* a root is checked before the walk (:class:`WrongType` otherwise): an
  rbtree's top node has no parent, an xarray's top node points back to the
  xarray (``xa_node->array``), a maple tree's root node has the tree
  (``| MA_ROOT_PARENT``) as its parent.
* ``struct hlist_node`` {``next``, ``pprev``}, ``struct hlist_head``
  {``first``}: NULL-terminated, unchanged since 2.6.
"""

from .kernel import per_stop
from .reader import MemoryFault

__all__ = ["TreeWalk", "WrongType", "rbtree_inorder", "xarray_entries", "maple_entries", "hlist_entries",
           "XA_ZERO_ENTRY", "XA_RETRY_ENTRY"]

M64 = (1 << 64) - 1
XA_RETRY_ENTRY = 0x402
XA_ZERO_ENTRY = 0x406
MAPLE_NODE_MASK = 255
MAPLE_LEAF_64, MAPLE_RANGE_64, MAPLE_ARANGE_64 = 1, 2, 3
_MAPLE_TYPES = {0: "maple_dense", 1: "maple_leaf_64", 2: "maple_range_64", 3: "maple_arange_64"}


class WrongType(Exception):
    """The memory named as a tree root is not one (its root node does not say so)."""


def _is_kernel_ptr(v: int) -> bool:
    """In the kernel half of the widest arm64 VA (52 bits: a 6.12 LPA2 kernel's linear
    map is at 0xfff0...; with 48 bits every kernel pointer still has these 12 bits set)."""
    return v >> 52 == 0xFFF


class TreeWalk:
    """``entries``: list of ``(index, last, entry)`` for xarray and maple trees
    (``last`` = ``index`` for an xarray), of node addresses for rbtrees and
    hlists; ``stop``: None, or why the walk ended early."""

    def __init__(self):
        self.entries = []
        self.stop = None


def _ptr(k, addr):
    return k.reader.u64(addr)


# -- rbtree --------------------------------------------------------------------------------
@per_stop
def _rb_offsets(k):
    lay = k.layout("struct rb_node", ["rb_right", "rb_left"])
    return lay.offset("rb_left"), lay.offset("rb_right")


def rbtree_inorder(k, root: int, limit: int = 1 << 20) -> TreeWalk:
    """The ``struct rb_node`` addresses of the ``struct rb_root`` at ``root`` (or an
    ``rb_root_cached``, which begins with one), in order (smallest key first)."""
    left, right = _rb_offsets(k)
    w = TreeWalk()
    try:
        node = _ptr(k, root)
    except MemoryFault as e:
        w.stop = f"cannot read the rb_root at {root:#x}: {e}"
        return w
    if node:
        if not _is_kernel_ptr(node) or node & 3:
            raise WrongType(f"{root:#x} is not an rb_root: its rb_node is {node:#x}")
        try:
            pc = _ptr(k, node)
        except MemoryFault as e:
            raise WrongType(f"{root:#x} is not an rb_root: {e}") from None
        if pc & ~3:
            raise WrongType(f"{root:#x} is not an rb_root: its top node {node:#x} has a parent "
                            f"({pc & ~3:#x})")
    stack, seen = [], set()
    while stack or node:
        while node:
            if node in seen:
                w.stop = f"loop: rb_node {node:#x} reached twice"
                return w
            seen.add(node)
            stack.append(node)
            try:
                node = _ptr(k, node + left)
            except MemoryFault as e:
                w.stop = f"cannot read rb_node {node:#x}: {e}"
                return w
        node = stack.pop()
        w.entries.append(node)
        if len(w.entries) >= limit:
            w.stop = f"stopped after {limit} entries"
            return w
        try:
            node = _ptr(k, node + right)
        except MemoryFault as e:
            w.stop = f"cannot read rb_node {node:#x}: {e}"
            return w
    return w


# -- hlist ----------------------------------------------------------------------------------
def hlist_entries(k, head: int, limit: int = 1 << 20) -> TreeWalk:
    """The ``struct hlist_node`` addresses on the ``struct hlist_head`` at ``head``
    (``first``, then each ``next`` until NULL)."""
    w = TreeWalk()
    seen = set()
    cur = head
    while True:
        try:
            nxt = _ptr(k, cur)          # hlist_head.first and hlist_node.next are at 0
        except MemoryFault as e:
            w.stop = f"cannot read {cur:#x}: {e}"
            return w
        if not nxt:
            return w
        if nxt in seen:
            w.stop = f"loop: hlist_node {nxt:#x} reached twice"
            return w
        if nxt >> 48 == 0xdead:
            w.stop = f"{cur:#x}->next is poison ({nxt:#x}): entry removed but still reachable"
            return w
        seen.add(nxt)
        w.entries.append(nxt)
        if len(w.entries) >= limit:
            w.stop = f"stopped after {limit} entries"
            return w
        cur = nxt


# -- xarray / radix tree --------------------------------------------------------------------
@per_stop
def _xa_layout(k):
    head = k.offset("struct xarray", "xa_head")
    node = k.layout("struct xa_node", ["shift", "slots"])
    if head is None or "slots" not in node:
        raise MemoryFault(0, "this kernel has no struct xarray (an XArray needs 4.20+)")
    slots = node.members["slots"]
    return head, node.offset("shift"), slots.offset, slots.size // 8


def _xa_is_node(e):
    return e & 3 == 2 and e > 4096


def xarray_entries(k, xa: int, values: bool = True, limit: int = 1 << 22) -> TreeWalk:
    """``(index, index, entry)`` for every present entry of the ``struct xarray`` (or
    ``struct radix_tree_root``) at ``xa``, in index order. Value entries (bit 0 set)
    are included when ``values``; zero and retry entries are skipped."""
    head_off, shift_off, slots_off, nslots = _xa_layout(k)
    w = TreeWalk()
    try:
        head = _ptr(k, xa + head_off)
    except MemoryFault as e:
        w.stop = f"cannot read the xarray at {xa:#x}: {e}"
        return w
    if not _xa_is_node(head):
        if head and not head & 1 and head not in (XA_ZERO_ENTRY, XA_RETRY_ENTRY) \
                and not _is_kernel_ptr(head):
            raise WrongType(f"{xa:#x} is not an xarray: xa_head is {head:#x}")
        if head and head not in (XA_ZERO_ENTRY, XA_RETRY_ENTRY) and (values or not head & 1):
            w.entries.append((0, 0, head))
        return w
    arr = k.offset("struct xa_node", "array")
    if arr is not None:
        try:
            back = _ptr(k, head - 2 + arr)
        except MemoryFault as e:
            raise WrongType(f"{xa:#x} is not an xarray: {e}") from None
        if back != xa:
            raise WrongType(f"{xa:#x} is not an xarray: its top node {head - 2:#x} belongs to "
                            f"{back:#x}")
    seen = set()

    def visit(entry, base):
        node = entry - 2
        if node in seen:
            w.stop = f"loop: xa_node {node:#x} reached twice"
            return False
        seen.add(node)
        try:
            shift = k.reader.read(node + shift_off, 1)[0]
            raw = k.reader.read(node + slots_off, 8 * nslots)
        except MemoryFault as e:
            w.stop = f"cannot read xa_node {node:#x}: {e}"
            return False
        for i in range(nslots):
            e = int.from_bytes(raw[8 * i:8 * i + 8], "little")
            if not e:
                continue
            idx = base + (i << shift)
            if _xa_is_node(e):
                if shift == 0:
                    w.stop = f"xa_node {node:#x} at shift 0 points to another node"
                    return False
                if not visit(e, idx):
                    return False
                continue
            if e & 3 == 2:              # sibling, retry, zero: not an entry of its own
                continue
            if e & 1 and not values:
                continue
            w.entries.append((idx, idx, e))
            if len(w.entries) >= limit:
                w.stop = f"stopped after {limit} entries"
                return False
        return True
    visit(head, 0)
    return w


# -- maple tree -----------------------------------------------------------------------------
@per_stop
def _maple_layouts(k):
    out = {}
    for t, typename in ((MAPLE_RANGE_64, "struct maple_range_64"),
                        (MAPLE_ARANGE_64, "struct maple_arange_64")):
        lay = k.layout(typename, ["pivot", "slot", "meta.end"])
        if "pivot" not in lay or "slot" not in lay:
            raise MemoryFault(0, "this kernel has no maple tree (6.1+)")
        piv, slot = lay.members["pivot"], lay.members["slot"]
        end = lay.members.get("meta.end")
        out[t] = (piv.offset, piv.size // 8, slot.offset, slot.size // 8,
                  end.offset if end is not None else None)
    out[MAPLE_LEAF_64] = out[MAPLE_RANGE_64]
    root = k.offset("struct maple_tree", "ma_root")
    return root, out


def maple_entries(k, mt: int, limit: int = 1 << 22) -> TreeWalk:
    """``(first, last, entry)`` for every entry of the ``struct maple_tree`` at ``mt``,
    in index order (drgn's ``mt_for_each``; zero entries skipped)."""
    root_off, lays = _maple_layouts(k)
    w = TreeWalk()
    try:
        root = _ptr(k, mt + root_off)
    except MemoryFault as e:
        w.stop = f"cannot read the maple tree at {mt:#x}: {e}"
        return w
    if not _xa_is_node(root):
        if root and not root & 1 and not _is_kernel_ptr(root):
            raise WrongType(f"{mt:#x} is not a maple tree: ma_root is {root:#x}")
        if root:
            w.entries.append((0, 0, root))
        return w
    try:
        parent = _ptr(k, root & ~MAPLE_NODE_MASK)
    except MemoryFault as e:
        raise WrongType(f"{mt:#x} is not a maple tree: {e}") from None
    if parent & ~7 != mt:           # the root node's parent is tree | MA_ROOT_PARENT
        raise WrongType(f"{mt:#x} is not a maple tree: its root node's parent is {parent:#x}")
    seen = set()

    def visit(enode, lo, hi, depth):
        node = enode & ~MAPLE_NODE_MASK
        typ = (enode >> 3) & 0xF
        if typ not in lays:
            w.stop = f"maple node {node:#x} has type {_MAPLE_TYPES.get(typ, typ)}, not a range node"
            return False
        if node in seen or depth > 64:
            w.stop = f"loop: maple node {node:#x} reached twice"
            return False
        seen.add(node)
        poff, npiv, soff, nslot, eoff = lays[typ]
        try:
            raw = k.reader.read(node, 256)
        except MemoryFault as e:
            w.stop = f"cannot read maple node {node:#x}: {e}"
            return False
        piv = [int.from_bytes(raw[poff + 8 * i:poff + 8 * i + 8], "little") for i in range(npiv)]
        slots = [int.from_bytes(raw[soff + 8 * i:soff + 8 * i + 8], "little") for i in range(nslot)]
        meta_end = raw[eoff] if eoff is not None else npiv
        if typ == MAPLE_ARANGE_64:
            end = meta_end
        elif not piv[-1]:
            end = meta_end
        elif piv[-1] == hi:
            end = npiv - 1
        else:
            end = npiv
        end = min(end, npiv)
        leaf = typ == MAPLE_LEAF_64
        prev = lo
        for i in range(end + 1):
            last = piv[i] if i < end else hi
            e = slots[i]
            if leaf:
                if e and e != XA_ZERO_ENTRY:
                    w.entries.append((prev, last, e))
                    if len(w.entries) >= limit:
                        w.stop = f"stopped after {limit} entries"
                        return False
            elif e:
                if not visit(e, prev, last, depth + 1):
                    return False
            prev = last + 1
        return True
    visit(root, 0, M64, 0)
    return w
