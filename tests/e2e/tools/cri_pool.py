#!/usr/bin/python3
"""Executor pool pods made through containerd's CRI, as a kubelet makes them (for tests/e2e/test_gateway.sh).

  cri_pool.py images SOCK OUT_DIR                   imports the pause and python-node test images into k8s.io;
                                                    prints the python-node image reference
  cri_pool.py run SOCK POD_NAMESPACE POD_NAME IMAGE RunPodSandbox (handler gvisor, annotation
                                                    dev.gvshim.execute=true) and one container that only stays up,
                                                    as the chart's pool pods: non-root, read-only root; prints the
                                                    pod sandbox id
  cri_pool.py remove SOCK POD_ID                    StopPodSandbox + RemovePodSandbox (what deleting a pod does)

Uses the CRI suite's client (tests/cri/crilib). Exits non-zero with the error on stderr when a call fails.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "cri"))

from crilib import client as c  # noqa: E402
from crilib import env, images  # noqa: E402

KEEP_UP = ["python3", "-c",
           "import signal, sys\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\nsignal.pause()"]


def main(argv):
    cmd, sock = argv[0], argv[1]
    if cmd == "images":
        images.import_pause(sock, argv[2], env.PAUSE_IMAGE)
        print(images.import_busybox(sock, argv[2], with_python_node=True))
        return 0
    cri = c.Client(sock)
    if cmd == "run":
        ns, name, image = argv[2], argv[3], argv[4]
        pod = cri.run_pod(name, namespace=ns, annotations={"dev.gvshim.execute": "true", "dev.gvshim.pool": name},
                          run_as_user=65534, run_as_group=65534, readonly_rootfs=True)
        cid = pod.run_container("pool", image, command=KEEP_UP, run_as_user=65534, run_as_group=65534,
                                readonly_rootfs=True, no_new_privs=True, drop_caps=["ALL"],
                                annotations={"dev.gvshim.execute": "true"})
        cri.wait_container(cid, c.RUNNING)
        print(pod.id)
        return 0
    if cmd == "remove":
        cri.stop_pod(argv[2])
        cri.remove_pod(argv[2])
        return 0
    print(f"cri_pool.py: unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
