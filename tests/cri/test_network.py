"""Pods on a real CNI bridge network, with runsc taking over each pod's network namespace (network = "sandbox").

This kernel (6.18) shows /proc/sys/net/core/rmem_default in every network namespace, which runsc takes for "the
root namespace" and refuses; these cases pass because the shim checks the namespace itself and hides /proc/sys/net
from `runsc create` (shim/task/netns.h).

containerd, the CNI bridge and every pod live inside a network namespace this test creates; "the host" of these
cases is that namespace. Nothing is assigned to or sent from the machine's root namespace.
"""

import json
import os
import subprocess
import tempfile
import time
import uuid

from crilib import client as c
from crilib.runner import case

SUBNET = "10.244.77.0/24"
GATEWAY = "10.244.77.1"
NETNS = f"gvscri-{uuid.uuid4().hex[:8]}"
CONTAINERD = {"netns": NETNS, "runsc_network": "sandbox", "hardening": 'host_network = "isolated"\n'}


def requires():
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "needs iproute2 with netns support"
    for plugin in ("bridge", "host-local", "loopback"):
        if not os.path.exists(f"/usr/lib/cni/{plugin}"):
            return f"needs the CNI plugin {plugin} (containernetworking-plugins)"
    return None


def setup(kwargs):
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True)
    conf = {"cniVersion": "1.0.0", "name": "gvshim-bridge",
            "plugins": [{"type": "bridge", "bridge": "gvscri0", "isGateway": True, "ipMasq": False,
                         "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                                  "dataDir": tempfile.mkdtemp(prefix="gvscri-ipam.")}}]}
    fd, path = tempfile.mkstemp(prefix="gvscri-cni.", suffix=".conflist")
    with os.fdopen(fd, "w") as f:
        json.dump(conf, f)
    kwargs["cni_conflist"] = path

    def teardown():
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
        os.unlink(path)
    return teardown


def in_netns(*cmd, timeout=30):
    return subprocess.run(["nsenter", f"--net=/run/netns/{NETNS}", *cmd], capture_output=True, text=True,
                          timeout=timeout)


SERVER = ["sh", "-c", "while :; do echo hello-from-$(hostname) | nc -l -p 8080; done"]


def pod_ip(t, pod):
    ip = pod.status().status.network.ip
    assert ip.startswith("10.244.77."), f"pod {pod.name} got {ip!r}, not an address of {SUBNET}"
    return ip


@case("pod_to_pod_and_host")
def pod_to_pod_and_host(t):
    server = t.cri.run_pod("server", dns=dict(servers=[GATEWAY], searches=["test.local"]))
    client = t.cri.run_pod("client")
    srv = server.run_container("srv", t.image, command=SERVER)
    cli = client.run_container("cli", t.image, command=["sleep", "100000"])
    for cid in (srv, cli):
        t.cri.wait_container(cid, c.RUNNING)
    ip = pod_ip(t, server)
    assert pod_ip(t, client) != ip
    # Inside the pod: gVisor's stack holds the pod's address on eth0.
    addrs = t.cri.exec_sync(cli, ["ip", "addr"], timeout=20).stdout.decode()
    assert pod_ip(t, client) in addrs, addrs
    deadline = time.monotonic() + 30
    while True:  # the server loop may be between two connections
        r = t.cri.exec_sync(cli, ["sh", "-c", f"nc -w 5 {ip} 8080 </dev/null"], timeout=20)
        if b"hello-from-server" in r.stdout:
            break
        assert time.monotonic() < deadline, f"pod to pod: {r}"
        time.sleep(0.2)
    # "The host" (the test's namespace, where the bridge is) reaches the pod too.
    probe = ("import socket; s=socket.create_connection(('%s', 8080), 5); print(s.recv(100).decode())" % ip)
    deadline = time.monotonic() + 30
    while True:
        r = in_netns("/usr/bin/python3", "-c", probe)
        if "hello-from-server" in r.stdout:
            break
        assert time.monotonic() < deadline, f"host to pod: {r.stdout} {r.stderr}"
        time.sleep(0.2)
    # DNS config and hostname as given.
    resolv = t.cri.exec_sync(srv, ["cat", "/etc/resolv.conf"], timeout=20).stdout.decode()
    assert f"nameserver {GATEWAY}" in resolv and "search test.local" in resolv, resolv
    assert t.cri.exec_sync(srv, ["hostname"], timeout=20).stdout.strip() == b"server"
    server.remove()
    client.remove()
    # The CNI released the addresses (host-local) and removed the veths: only the bridge is left.
    links = in_netns("ip", "-o", "link").stdout
    assert "veth" not in links, links


@case("host_network_pod_gets_only_loopback")
def host_network_pod_gets_only_loopback(t):
    """A hostNetwork pod under host_network = "isolated" gets gVisor's loopback-only network (--network=none):
    --network=sandbox would hand the node's interfaces to gVisor."""
    pod = t.cri.run_pod("hostnet", host_network=True)
    cid = pod.run_container("app", t.image, command=["sleep", "100000"])
    t.cri.wait_container(cid, c.RUNNING)
    links = t.cri.exec_sync(cid, ["ip", "-o", "link"], timeout=20).stdout.decode()
    names = sorted(line.split(":")[1].strip() for line in links.splitlines() if ":" in line)
    assert names == ["lo"], links
    pod.remove()
