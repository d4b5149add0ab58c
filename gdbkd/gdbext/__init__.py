"""Everything gdbkd registers inside gdb's embedded Python.

``register()`` is idempotent: sourcing kd.py twice does not duplicate commands.
"""

_registered = False


def register():
    global _registered
    if _registered:
        return
    from ..commands import register_all
    from ..kernel import unwind, modules
    unwind.register()
    register_all()
    modules.register_events()
    _registered = True
