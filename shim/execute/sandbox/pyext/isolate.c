/* _gvshim_isolate: the few system calls the Python runner needs that Python's standard library lacks
 * (unshare, setns, mount, umount2, prctl), as a CPython extension module.
 *
 * It runs inside the pod's sandbox, in whatever image the pod uses, so it depends on nothing there but the
 * interpreter: it is built against the stable ABI (abi3, usable by CPython 3.6 and later), links no C library
 * (-nostdlib: it makes the system calls itself, so a musl- or glibc-based Python both load it, and ctypes and
 * libffi are not needed), and imports only CPython's own API symbols, which the interpreter provides. It is
 * bind-mounted read-only into the pod's execute container under /.gvshim (see docs/execute.md).
 *
 * Every function raises OSError(errno, "<call>") on failure; the runner adds strerror's text.
 */
#define Py_LIMITED_API 0x03060000
#include <Python.h>

#if defined(__x86_64__)
enum { kSysMount = 165, kSysUmount2 = 166, kSysUnshare = 272, kSysPrctl = 157, kSysSetns = 308 };
static long sys5(long n, long a, long b, long c, long d, long e) {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                   : "rcx", "r11", "memory");
  return ret;
}
#elif defined(__aarch64__)
enum { kSysMount = 40, kSysUmount2 = 39, kSysUnshare = 97, kSysPrctl = 167, kSysSetns = 268 };
static long sys5(long n, long a, long b, long c, long d, long e) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
  return x0;
}
#else
#error "_gvshim_isolate: unsupported architecture"
#endif

/* A raw system call returns -errno on failure. */
static PyObject* check(long ret, const char* what) {
  if (ret < 0 && ret > -4096) {
    PyObject* args = Py_BuildValue("(is)", (int)-ret, what);
    if (args != NULL) {
      PyErr_SetObject(PyExc_OSError, args);
      Py_DECREF(args);
    }
    return NULL;
  }
  return PyLong_FromLong(ret);
}

static PyObject* py_unshare(PyObject* self, PyObject* args) {
  int flags;
  if (!PyArg_ParseTuple(args, "i:unshare", &flags)) return NULL;
  return check(sys5(kSysUnshare, flags, 0, 0, 0, 0), "unshare");
}

static PyObject* py_setns(PyObject* self, PyObject* args) {
  int fd, nstype;
  if (!PyArg_ParseTuple(args, "ii:setns", &fd, &nstype)) return NULL;
  return check(sys5(kSysSetns, fd, nstype, 0, 0, 0), "setns");
}

/* mount(source, target, fstype, flags, data): source, fstype and data may be None. */
static PyObject* py_mount(PyObject* self, PyObject* args) {
  const char *source, *target, *fstype, *data;
  unsigned long flags;
  if (!PyArg_ParseTuple(args, "zszkz:mount", &source, &target, &fstype, &flags, &data)) return NULL;
  return check(sys5(kSysMount, (long)source, (long)target, (long)fstype, (long)flags, (long)data), "mount");
}

static PyObject* py_prctl(PyObject* self, PyObject* args) {
  int option;
  unsigned long arg2 = 0;
  if (!PyArg_ParseTuple(args, "i|k:prctl", &option, &arg2)) return NULL;
  return check(sys5(kSysPrctl, option, (long)arg2, 0, 0, 0), "prctl");
}

/* umount2(target, flags) */
static PyObject* py_umount2(PyObject* self, PyObject* args) {
  const char* target;
  int flags = 0;
  if (!PyArg_ParseTuple(args, "s|i:umount2", &target, &flags)) return NULL;
  return check(sys5(kSysUmount2, (long)target, flags, 0, 0, 0), "umount2");
}

static PyMethodDef kMethods[] = {
    {"umount2", py_umount2, METH_VARARGS, "umount2(target, flags=0): umount2(2)"},
    {"unshare", py_unshare, METH_VARARGS, "unshare(flags): unshare(2)"},
    {"setns", py_setns, METH_VARARGS, "setns(fd, nstype): setns(2)"},
    {"mount", py_mount, METH_VARARGS, "mount(source, target, fstype, flags, data): mount(2)"},
    {"prctl", py_prctl, METH_VARARGS, "prctl(option, arg2=0): prctl(2) with the other arguments 0"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef kModule = {
    PyModuleDef_HEAD_INIT, "_gvshim_isolate", "unshare, mount and prctl for the gvshim Python runner", -1,
    kMethods,              NULL,              NULL,                                                  NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__gvshim_isolate(void) { return PyModule_Create(&kModule); }
