# unshare, mount, umount2 and prctl for the runner, from gvshim's own extension module (_gvshim_isolate, built
# from ../pyext/isolate.c and mounted with the other helpers under /.gvshim). Python's standard library has no
# such calls, and ctypes is not in every image (it needs libffi): the extension needs nothing but the
# interpreter itself.

import os

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_REC, MS_PRIVATE = 0x4000, 0x40000
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

MODULE = "_gvshim_isolate"
_mod = None
load_error = None


def load(helpers_dir):
    """Imports the extension from helpers_dir; returns None or the reason it could not be loaded."""
    global _mod, load_error
    import importlib.machinery
    import importlib.util

    path = os.path.join(helpers_dir, MODULE + ".abi3.so")
    try:
        loader = importlib.machinery.ExtensionFileLoader(MODULE, path)
        spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
        _mod = mod
    except Exception as e:  # noqa: BLE001 - reported as the reason isolation is missing
        load_error = "cannot load %s: %s" % (path, e)
    return load_error


def _call(fn, *args):
    if _mod is None:
        raise OSError(0, load_error or "%s is not loaded" % MODULE)
    try:
        return getattr(_mod, fn)(*args)
    except OSError as e:
        raise OSError(e.errno, "%s: %s" % (e.strerror or fn, os.strerror(e.errno))) from None


def unshare(flags):
    _call("unshare", flags)


def setns(fd, nstype):
    _call("setns", fd, nstype)


class PidNamespaces:
    """unshare(CLONE_NEWPID) before each fork, from one process. Linux lets a process do that only while the
    namespace for its children is its own, so the previous one is left first with setns() to the process's
    own namespace; gVisor refuses that setns (EINVAL) but needs it not."""

    def __init__(self):
        self.own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.used = False

    def next(self):
        if self.used:
            try:
                setns(self.own, CLONE_NEWPID)
            except OSError:
                pass
        unshare(CLONE_NEWPID)
        self.used = True


def mount(source, target, fstype, flags, data):
    try:
        _call("mount", source, target, fstype, flags, data)
    except OSError as e:
        raise OSError(e.errno, "mount %s on %s: %s" % (fstype or source or "", target, os.strerror(e.errno))) from None


def umount2(target, flags=0):
    _call("umount2", target, flags)


def prctl(option, arg2=0):
    return _call("prctl", option, arg2)
