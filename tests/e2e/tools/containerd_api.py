#!/usr/bin/python3
"""Small client of containerd's GRPC API for e2e cases that ctr cannot express.

  containerd_api.py --protos DIR --socket SOCK --namespace NS kill-created --id ID [--signal 9]

kill-created: for an existing container (made with `ctr container create`), creates its task WITHOUT starting it,
checks the task is CREATED, kills it, waits for the exit and deletes the task. Prints one `key=value` line per step
(status_after_create, kill, wait_exit_status, status_after_wait, delete_exit_status) and exits 0 when every call
succeeded; the shell test asserts on the values.
"""
import argparse
import sys

import grpc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protos", required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("command", choices=["kill-created"])
    ap.add_argument("--id", required=True)
    ap.add_argument("--signal", type=int, default=9)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--runc-binary", help="baseline only: task options for the runc shim (BinaryName)")
    ap.add_argument("--runc-root", default="", help="baseline only: task options for the runc shim (Root)")
    args = ap.parse_args()

    sys.path.insert(0, args.protos)
    from github.com.containerd.containerd.api.services.containers.v1 import containers_pb2
    from github.com.containerd.containerd.api.services.snapshots.v1 import snapshots_pb2
    from github.com.containerd.containerd.api.services.tasks.v1 import tasks_pb2
    from github.com.containerd.containerd.api.types.task import task_pb2
    from google.protobuf import empty_pb2

    channel = grpc.insecure_channel("unix://" + args.socket)
    md = (("containerd-namespace", args.namespace),)

    def call(service, method, request, response_type, timeout=args.timeout):
        fn = channel.unary_unary(f"/{service}/{method}", request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=response_type.FromString)
        return fn(request, metadata=md, timeout=timeout)

    tasks = "containerd.services.tasks.v1.Tasks"
    status_name = lambda s: task_pb2.Status.Name(s)

    ctr = call("containerd.services.containers.v1.Containers", "Get",
               containers_pb2.GetContainerRequest(id=args.id), containers_pb2.GetContainerResponse).container
    mounts = call("containerd.services.snapshots.v1.Snapshots", "Mounts",
                  snapshots_pb2.MountsRequest(snapshotter=ctr.snapshotter, key=ctr.snapshot_key),
                  snapshots_pb2.MountsResponse).mounts
    req = tasks_pb2.CreateTaskRequest(container_id=args.id, rootfs=mounts)
    if args.runc_binary:
        # containerd.runc.v1.Options{binary_name = 6, root = 7}, encoded by hand.
        def lenfield(num, data):
            return bytes([num << 3 | 2, len(data)]) + data
        req.options.type_url = "containerd.runc.v1.Options"
        req.options.value = lenfield(6, args.runc_binary.encode()) + lenfield(7, args.runc_root.encode())
    created = call(tasks, "Create", req, tasks_pb2.CreateTaskResponse)
    print(f"create_pid={created.pid}", flush=True)
    got = call(tasks, "Get", tasks_pb2.GetRequest(container_id=args.id), tasks_pb2.GetResponse)
    print(f"status_after_create={status_name(got.process.status)}", flush=True)

    # Subscribe to the exit before killing, so a fast exit cannot be missed.
    wait_future = channel.unary_unary(f"/{tasks}/Wait", request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=tasks_pb2.WaitResponse.FromString).future(
                                          tasks_pb2.WaitRequest(container_id=args.id), metadata=md,
                                          timeout=args.timeout)
    try:
        call(tasks, "Kill", tasks_pb2.KillRequest(container_id=args.id, signal=args.signal), empty_pb2.Empty)
        print("kill=ok", flush=True)
    except grpc.RpcError as e:
        print(f"kill=error {e.code().name}: {e.details()}", flush=True)
        return 1
    waited = wait_future.result()
    print(f"wait_exit_status={waited.exit_status}", flush=True)
    got = call(tasks, "Get", tasks_pb2.GetRequest(container_id=args.id), tasks_pb2.GetResponse)
    print(f"status_after_wait={status_name(got.process.status)}", flush=True)
    deleted = call(tasks, "Delete", tasks_pb2.DeleteTaskRequest(container_id=args.id), tasks_pb2.DeleteResponse)
    print(f"delete_exit_status={deleted.exit_status}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as e:
        print(f"error={e.code().name}: {e.details()}", flush=True)
        sys.exit(1)
