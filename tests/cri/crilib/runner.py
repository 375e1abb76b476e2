"""The CRI suite's case runner.

A test file (tests/cri/test_*.py) defines cases with @case and, optionally, CONTAINERD = dict(...) (keyword
arguments for env.Containerd). run.py starts one private containerd per file and runs its cases in order:

    @case("pod_lifecycle")
    def pod_lifecycle(t):                 # t: Test (t.cri, t.ctd, t.image, t.defer(fn), t.skip(why))
        pod = t.cri.run_pod("p1")
        ...

Each case prints `cri-case: PASS|FAIL|SKIP FILE/NAME (Ns)`; the run ends with `cri: N passed, M failed`.
After a case, every pod its client created is stopped and removed (what the case deferred runs first).
"""

import sys
import time
import traceback

_registry = []


class Skip(Exception):
    pass


def case(name):
    def deco(fn):
        _registry.append((fn.__module__, name, fn))
        return fn
    return deco


def cases_of(module_name):
    return [(n, f) for m, n, f in _registry if m == module_name]


class Test:
    def __init__(self, ctd, name):
        self.ctd = ctd
        self.name = name
        self.cri = ctd.client()
        self.image = ctd.image
        self._deferred = []

    def defer(self, fn, *args, **kwargs):
        self._deferred.append((fn, args, kwargs))

    def skip(self, why):
        raise Skip(why)

    def log(self, msg):
        print(f"[{self.name}] {msg}", file=sys.stderr, flush=True)

    def finish(self):
        errors = []
        for fn, args, kwargs in reversed(self._deferred):
            try:
                fn(*args, **kwargs)
            except Exception as e:  # cleanup must go on
                errors.append(f"{getattr(fn, '__name__', fn)}: {e}")
        errors += [f"cleanup of pod {p}: {e}" for p, e in self.cri.cleanup()]
        self.cri.close()
        return errors


def run_file(file_label, module_name, ctd, only=None):
    """Runs the cases of one module against a started containerd; returns (passed, failed, skipped)."""
    passed = failed = skipped = 0
    for name, fn in cases_of(module_name):
        if only and name not in only:
            continue
        print(f"[{file_label}] --- {name}", file=sys.stderr, flush=True)
        start = time.monotonic()
        t = Test(ctd, name)
        outcome, detail = "PASS", ""
        try:
            fn(t)
        except Skip as e:
            outcome, detail = "SKIP", str(e)
        except Exception:
            outcome = "FAIL"
            traceback.print_exc(file=sys.stderr)
        cleanup_errors = t.finish()
        if cleanup_errors and outcome == "PASS":
            outcome = "FAIL"
            print("cleanup failed: " + "; ".join(cleanup_errors), file=sys.stderr)
        if outcome == "FAIL":
            print(f"containerd log tail:\n{ctd.log_tail(30)}", file=sys.stderr)
        took = time.monotonic() - start
        extra = f" ({detail})" if detail else ""
        print(f"cri-case: {outcome} {file_label}/{name} ({took:.1f}s){extra}", flush=True)
        passed += outcome == "PASS"
        failed += outcome == "FAIL"
        skipped += outcome == "SKIP"
    return passed, failed, skipped
