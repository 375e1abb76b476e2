#!/usr/bin/python3
"""Runs gvshim's CRI suite: every tests/cri/test_*.py (or the files given) against its own private containerd,
whose CRI plugin has the `gvisor` handler configured as README.md tells users.

    /usr/bin/python3 tests/cri/run.py [test_x.py ...]
Env: CRI_CASES="a b"   only these cases;  CRI_BIN_DIR  where the shim and gvshim are (default build/shim/main)
     CRI_KEEP=1        keep the containerd dir (containerd is still stopped)
Prints `cri-case: PASS|FAIL|SKIP file/case` per case and `cri: N passed, M failed` last; exits 1 on a failure.
"""

import importlib
import os
import pathlib
import sys
import traceback

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from crilib import env, runner  # noqa: E402


def main(argv):
    if os.geteuid() != 0:
        print("cri: needs root (containerd, runsc)", file=sys.stderr)
        print("cri: 0 passed, 1 failed")
        return 1
    files = [pathlib.Path(a).resolve() for a in argv] or sorted(HERE.glob("test_*.py"))
    only = set(os.environ.get("CRI_CASES", "").split()) or None
    bin_dir = os.environ.get("CRI_BIN_DIR")
    passed = failed = skipped = 0
    failures = []
    for f in files:
        label = f.stem
        print(f"=== cri: {label}", flush=True)
        try:
            module = importlib.import_module(label)
            names = [n for n, _ in runner.cases_of(module.__name__)]
            if only and not (only & set(names)):
                continue
            requirement = getattr(module, "requires", None)
            why = requirement() if requirement else None
            if why:
                for n in names:
                    print(f"cri-case: SKIP {label}/{n} ({why})", flush=True)
                skipped += len(names)
                continue
            kwargs = dict(getattr(module, "CONTAINERD", {}))
            setup = getattr(module, "setup", None)
            teardown = None
            if setup:
                teardown = setup(kwargs)
            try:
                with env.Containerd(bin_dir=bin_dir, **kwargs) as ctd:
                    p, m, s = runner.run_file(label, module.__name__, ctd, only)
            finally:
                if teardown:
                    teardown()
        except Exception:
            traceback.print_exc()
            print(f"cri-case: FAIL {label}/setup", flush=True)
            p, m, s = 0, 1, 0
        passed, failed, skipped = passed + p, failed + m, skipped + s
    if skipped:
        print(f"cri: {skipped} skipped")
    print(f"cri: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
