"""A small CRI v1 client that drives containerd's CRI plugin the way a kubelet does.

    cri = Client("/tmp/gvs.X/c.sock")
    pod = cri.run_pod("web", namespace="default", handler="gvisor")
    cid = pod.create_container("app", image, command=["sleep", "1000"])
    cri.start(cid)
    out = cri.exec_sync(cid, ["echo", "hi"], timeout=10)
    pod.remove()                       # stop + remove, as a kubelet does

Every call has a deadline (default 60 s); RPC errors surface as grpc.RpcError (use `code_of` to read the code).
Waiting helpers poll the CRI with a deadline and fail with what they last saw; they never sleep blindly.
"""

import json
import time
import uuid

import grpc

from . import protos

api, api_grpc = protos.load()

# Short aliases for the enums tests compare against.
CREATED = api.CONTAINER_CREATED
RUNNING = api.CONTAINER_RUNNING
EXITED = api.CONTAINER_EXITED
UNKNOWN = api.CONTAINER_UNKNOWN
SANDBOX_READY = api.SANDBOX_READY
SANDBOX_NOTREADY = api.SANDBOX_NOTREADY
POD = api.POD
CONTAINER = api.CONTAINER
NODE = api.NODE


def code_of(err):
    """The grpc.StatusCode of an RpcError (None for anything else)."""
    return err.code() if isinstance(err, grpc.RpcError) else None


def state_name(state):
    return api.ContainerState.Name(state)


class CriError(AssertionError):
    """A wait or expectation on the CRI that did not hold."""


def pod_config(name, namespace="default", uid=None, attempt=0, hostname=None, log_directory="", labels=None,
               annotations=None, host_network=False, pid_mode=None, sysctls=None, dns=None, cgroup_parent="",
               run_as_user=None, run_as_group=None, supplemental_groups=None, readonly_rootfs=False,
               privileged=False, seccomp=None, port_mappings=None):
    """A PodSandboxConfig as a kubelet builds it.

    host_network=True uses the node's network namespace and, as the kubelet does, sends an empty hostname.
    seccomp: None | "RuntimeDefault" | "Unconfined" | ("Localhost", "/abs/path").
    dns: None | dict(servers=[...], searches=[...], options=[...]).
    """
    uid = uid or str(uuid.uuid4())
    if hostname is None:
        hostname = "" if host_network else name
    ns = api.NamespaceOption(network=api.NODE if host_network else api.POD,
                             pid=pid_mode if pid_mode is not None else api.CONTAINER, ipc=api.POD)
    sc = api.LinuxSandboxSecurityContext(namespace_options=ns, readonly_rootfs=readonly_rootfs,
                                         privileged=privileged)
    if run_as_user is not None:
        sc.run_as_user.value = run_as_user
    if run_as_group is not None:
        sc.run_as_group.value = run_as_group
    if supplemental_groups:
        sc.supplemental_groups.extend(supplemental_groups)
    if seccomp is not None:
        sc.seccomp.CopyFrom(security_profile(seccomp))
    cfg = api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=attempt),
        hostname=hostname, log_directory=log_directory,
        linux=api.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent, security_context=sc))
    for k, v in (labels or {}).items():
        cfg.labels[k] = v
    for k, v in (annotations or {}).items():
        cfg.annotations[k] = v
    for k, v in (sysctls or {}).items():
        cfg.linux.sysctls[k] = v
    if dns:
        cfg.dns_config.CopyFrom(api.DNSConfig(**dns))
    for pm in port_mappings or []:
        cfg.port_mappings.add(**pm)
    return cfg


def security_profile(spec):
    if isinstance(spec, tuple):
        kind, ref = spec
        return api.SecurityProfile(profile_type=api.SecurityProfile.ProfileType.Value(kind), localhost_ref=ref)
    return api.SecurityProfile(profile_type=api.SecurityProfile.ProfileType.Value(spec))


def container_config(name, image, command=None, args=None, attempt=0, env=None, working_dir="", mounts=None,
                     labels=None, annotations=None, log_path="", stdin=False, stdin_once=False, tty=False,
                     resources=None, run_as_user=None, run_as_group=None, run_as_username="",
                     supplemental_groups=None, readonly_rootfs=False, privileged=False, add_caps=None,
                     drop_caps=None, seccomp=None, no_new_privs=False, masked_paths=None, readonly_paths=None,
                     host_network=False, pid_mode=None):
    """A ContainerConfig as a kubelet builds it.

    mounts: list of dicts (container_path, host_path, readonly, propagation).
    resources: dict of LinuxContainerResources fields (memory_limit_in_bytes, cpu_quota, ...).
    """
    ns = api.NamespaceOption(network=api.NODE if host_network else api.POD,
                             pid=pid_mode if pid_mode is not None else api.CONTAINER, ipc=api.POD)
    sc = api.LinuxContainerSecurityContext(namespace_options=ns, readonly_rootfs=readonly_rootfs,
                                           privileged=privileged, run_as_username=run_as_username,
                                           no_new_privs=no_new_privs)
    if run_as_user is not None:
        sc.run_as_user.value = run_as_user
    if run_as_group is not None:
        sc.run_as_group.value = run_as_group
    if supplemental_groups:
        sc.supplemental_groups.extend(supplemental_groups)
    if add_caps or drop_caps:
        sc.capabilities.CopyFrom(api.Capability(add_capabilities=add_caps or [], drop_capabilities=drop_caps or []))
    if seccomp is not None:
        sc.seccomp.CopyFrom(security_profile(seccomp))
    if masked_paths is not None:
        sc.masked_paths.extend(masked_paths)
    if readonly_paths is not None:
        sc.readonly_paths.extend(readonly_paths)
    cfg = api.ContainerConfig(
        metadata=api.ContainerMetadata(name=name, attempt=attempt), image=api.ImageSpec(image=image),
        command=command or [], args=args or [], working_dir=working_dir, log_path=log_path, stdin=stdin,
        stdin_once=stdin_once, tty=tty,
        linux=api.LinuxContainerConfig(resources=api.LinuxContainerResources(**(resources or {})),
                                       security_context=sc))
    for k, v in (env or {}).items():
        cfg.envs.add(key=k, value=v)
    for m in mounts or []:
        cfg.mounts.add(**m)
    for k, v in (labels or {}).items():
        cfg.labels[k] = v
    for k, v in (annotations or {}).items():
        cfg.annotations[k] = v
    return cfg


class Pod:
    """A pod sandbox created through Client.run_pod: remembers its config for CreateContainer."""

    def __init__(self, client, pod_id, config, handler):
        self.client = client
        self.id = pod_id
        self.config = config
        self.handler = handler

    @property
    def name(self):
        return self.config.metadata.name

    def create_container(self, name, image, **kwargs):
        """CreateContainer in this pod; returns the container id. kwargs as container_config()."""
        if self.config.linux.security_context.namespace_options.network == api.NODE:
            kwargs.setdefault("host_network", True)
        cfg = container_config(name, image, **kwargs)
        return self.client.create_container(self.id, cfg, self.config)

    def run_container(self, name, image, **kwargs):
        """Create + Start; returns the container id."""
        cid = self.create_container(name, image, **kwargs)
        self.client.start(cid)
        return cid

    def status(self, verbose=False):
        return self.client.pod_status(self.id, verbose=verbose)

    def containers(self):
        return self.client.list_containers(pod_sandbox_id=self.id)

    def stop(self):
        self.client.stop_pod(self.id)

    def remove(self):
        """StopPodSandbox then RemovePodSandbox (a kubelet always stops before removing)."""
        self.client.stop_pod(self.id)
        self.client.remove_pod(self.id)


class Client:
    """CRI RuntimeService + ImageService over containerd's gRPC socket."""

    def __init__(self, socket_path, timeout=60.0):
        self.socket_path = socket_path
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self.runtime = api_grpc.RuntimeServiceStub(self.channel)
        self.images = api_grpc.ImageServiceStub(self.channel)
        self.created_pods = []  # every pod id this client created, for cleanup

    def close(self):
        self.channel.close()

    def _rt(self, method, request, timeout=None):
        return getattr(self.runtime, method)(request, timeout=timeout or self.timeout)

    # ---- runtime ----
    def version(self):
        return self._rt("Version", api.VersionRequest(version="v1"))

    def status(self, verbose=False):
        return self._rt("Status", api.StatusRequest(verbose=verbose))

    # ---- pods ----
    def run_pod(self, name, handler="gvisor", config=None, timeout=None, **kwargs):
        """RunPodSandbox with pod_config(name, **kwargs) (or an explicit config); returns a Pod."""
        cfg = config if config is not None else pod_config(name, **kwargs)
        resp = self._rt("RunPodSandbox", api.RunPodSandboxRequest(config=cfg, runtime_handler=handler), timeout)
        self.created_pods.append(resp.pod_sandbox_id)
        return Pod(self, resp.pod_sandbox_id, cfg, handler)

    def stop_pod(self, pod_id, timeout=None):
        self._rt("StopPodSandbox", api.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout)

    def remove_pod(self, pod_id, timeout=None):
        self._rt("RemovePodSandbox", api.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout)

    def pod_status(self, pod_id, verbose=False):
        return self._rt("PodSandboxStatus", api.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose))

    def pod_info(self, pod_id):
        """The verbose PodSandboxStatus 'info' JSON (containerd puts pid, config, runtime spec there)."""
        resp = self.pod_status(pod_id, verbose=True)
        return json.loads(resp.info.get("info", "{}"))

    def list_pods(self, pod_id="", state=None, labels=None):
        f = api.PodSandboxFilter(id=pod_id)
        if state is not None:
            f.state.state = state
        for k, v in (labels or {}).items():
            f.label_selector[k] = v
        return list(self._rt("ListPodSandbox", api.ListPodSandboxRequest(filter=f)).items)

    # ---- containers ----
    def create_container(self, pod_id, config, sandbox_config, timeout=None):
        req = api.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=sandbox_config)
        return self._rt("CreateContainer", req, timeout).container_id

    def start(self, cid, timeout=None):
        self._rt("StartContainer", api.StartContainerRequest(container_id=cid), timeout)

    def stop(self, cid, grace=0, timeout=None):
        """StopContainer with `grace` seconds between the stop signal and SIGKILL."""
        self._rt("StopContainer", api.StopContainerRequest(container_id=cid, timeout=grace),
                 timeout or self.timeout + grace)

    def remove(self, cid, timeout=None):
        self._rt("RemoveContainer", api.RemoveContainerRequest(container_id=cid), timeout)

    def container_status(self, cid, verbose=False):
        return self._rt("ContainerStatus", api.ContainerStatusRequest(container_id=cid, verbose=verbose)).status

    def container_info(self, cid):
        """The verbose ContainerStatus 'info' JSON (pid, runtime spec, ...)."""
        resp = self._rt("ContainerStatus", api.ContainerStatusRequest(container_id=cid, verbose=True))
        return json.loads(resp.info.get("info", "{}"))

    def list_containers(self, pod_sandbox_id="", cid="", state=None, labels=None):
        f = api.ContainerFilter(id=cid, pod_sandbox_id=pod_sandbox_id)
        if state is not None:
            f.state.state = state
        for k, v in (labels or {}).items():
            f.label_selector[k] = v
        return list(self._rt("ListContainers", api.ListContainersRequest(filter=f)).containers)

    def update_resources(self, cid, timeout=None, **resources):
        req = api.UpdateContainerResourcesRequest(container_id=cid,
                                                  linux=api.LinuxContainerResources(**resources))
        self._rt("UpdateContainerResources", req, timeout)

    def reopen_log(self, cid):
        self._rt("ReopenContainerLog", api.ReopenContainerLogRequest(container_id=cid))

    # ---- exec / attach ----
    def exec_sync(self, cid, cmd, timeout=0, rpc_timeout=None):
        """ExecSync; `timeout` is the CRI's own timeout in seconds (0 = none). Returns the ExecSyncResponse."""
        req = api.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout)
        return self._rt("ExecSync", req, rpc_timeout or (self.timeout + timeout))

    def exec_url(self, cid, cmd, tty=False, stdin=False, stdout=True, stderr=True):
        req = api.ExecRequest(container_id=cid, cmd=cmd, tty=tty, stdin=stdin, stdout=stdout,
                              stderr=stderr and not tty)
        return self._rt("Exec", req).url

    def attach_url(self, cid, tty=False, stdin=False, stdout=True, stderr=True):
        req = api.AttachRequest(container_id=cid, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr and not tty)
        return self._rt("Attach", req).url

    # ---- stats ----
    def container_stats(self, cid):
        return self._rt("ContainerStats", api.ContainerStatsRequest(container_id=cid)).stats

    def list_container_stats(self, pod_sandbox_id="", cid=""):
        f = api.ContainerStatsFilter(id=cid, pod_sandbox_id=pod_sandbox_id)
        return list(self._rt("ListContainerStats", api.ListContainerStatsRequest(filter=f)).stats)

    # ---- images ----
    def image_status(self, ref):
        return self.images.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image=ref)),
                                       timeout=self.timeout).image

    def list_images(self):
        return list(self.images.ListImages(api.ListImagesRequest(), timeout=self.timeout).images)

    # ---- waiting ----
    def wait_container(self, cid, state, timeout=30.0):
        """Polls ContainerStatus until the container is in `state`; returns that status."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.container_status(cid)
            if st.state == state:
                return st
            if time.monotonic() >= deadline:
                raise CriError(f"container {cid} ({st.metadata.name}) still {state_name(st.state)} after "
                               f"{timeout}s, wanted {state_name(state)} (reason {st.reason!r}, "
                               f"message {st.message!r})")
            time.sleep(0.05)

    def wait_exit(self, cid, timeout=30.0):
        return self.wait_container(cid, EXITED, timeout)

    def cleanup(self):
        """Stops and removes every pod this client created (errors ignored); returns the ids that failed."""
        failed = []
        for pid in reversed(self.created_pods):
            try:
                self.stop_pod(pid)
                self.remove_pod(pid)
            except grpc.RpcError as e:
                if code_of(e) != grpc.StatusCode.NOT_FOUND:
                    failed.append((pid, str(e.details())))
        self.created_pods = []
        return failed
