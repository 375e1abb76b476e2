"""Test images for the CRI suite, built locally (no registry) and imported into containerd's k8s.io namespace.

- the busybox image of scripts/build-image.sh (optionally with python3 and node);
- a pause image: one static binary (tests/cri/pause/pause.c) as /pause, packed here as an OCI layout.
"""

import hashlib
import io
import json
import os
import pathlib
import subprocess
import tarfile
import tempfile

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
PAUSE_SRC = REPO_ROOT / "tests/cri/pause/pause.c"
CRI_NAMESPACE = "k8s.io"


def _ctr(sock, *args):
    return subprocess.run(["ctr", "-a", sock, "-n", CRI_NAMESPACE, *args], check=True, capture_output=True,
                          text=True, timeout=300).stdout


def import_busybox(sock, out_dir, with_python_node=False):
    """Builds (cached) the busybox test image with scripts/build-image.sh and imports it; returns its reference.

    The import is done here: build-image.sh checks its import with `ctr images ls -q | grep -q`, which can fail
    under pipefail in the k8s.io namespace, where the CRI adds an id reference per image (a longer listing).
    """
    cmd = ["bash", str(REPO_ROOT / "scripts/build-image.sh"), "--out", str(out_dir)]
    if with_python_node:
        cmd.append("--with-python-node")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    name = proc.stdout.strip().splitlines()[-1]
    variant = "python-node" if with_python_node else "busybox"
    _ctr(sock, "images", "import", str(pathlib.Path(out_dir) / variant / "image.tar"))
    if name not in _ctr(sock, "images", "ls", "-q").split():
        raise RuntimeError(f"importing the {variant} image did not create {name}")
    return name


def _blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def _tar_bytes(entries):
    """A deterministic tar of (name, mode, bytes-or-None-for-dir) entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, mode, data in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 0
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_pause_image(out_dir, name):
    """Compiles pause.c statically and writes an OCI layout archive; returns its path (cached by content)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = PAUSE_SRC.read_bytes()
    key = hashlib.sha256(src + name.encode()).hexdigest()[:16]
    archive = out_dir / f"pause-{key}.tar"
    if archive.exists():
        return archive
    with tempfile.TemporaryDirectory(dir=out_dir) as work:
        work = pathlib.Path(work)
        binary = work / "pause"
        subprocess.run(["cc", "-static", "-Os", "-s", "-o", str(binary), str(PAUSE_SRC)], check=True,
                       capture_output=True, timeout=120)
        layer = _tar_bytes([("dev", 0o755, None), ("etc", 0o755, None), ("proc", 0o755, None),
                            ("sys", 0o755, None), ("pause", 0o755, binary.read_bytes())])
        layout = work / "layout"
        layer_digest, layer_size = _blob(layout, layer)
        config = {"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
                  "config": {"Entrypoint": ["/pause"], "WorkingDir": "/"},
                  "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}
        cfg_digest, cfg_size = _blob(layout, json.dumps(config, sort_keys=True).encode())
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest,
                               "size": cfg_size},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                                "size": layer_size}]}
        man_digest, man_size = _blob(layout, json.dumps(manifest, sort_keys=True).encode())
        index = {"schemaVersion": 2,
                 "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_digest,
                                "size": man_size, "platform": {"architecture": "amd64", "os": "linux"},
                                "annotations": {"io.containerd.image.name": name,
                                                "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}}]}
        (layout / "index.json").write_text(json.dumps(index))
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        tmp = archive.with_suffix(".tmp")
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
            for p in sorted(layout.rglob("*")):
                info = tar.gettarinfo(str(p), arcname=str(p.relative_to(layout)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if p.is_file():
                    with open(p, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        os.replace(tmp, archive)
    return archive


def import_pause(sock, out_dir, name):
    """Builds and imports the pause image under `name` (what sandbox_image names); returns `name`."""
    archive = build_pause_image(out_dir, name)
    _ctr(sock, "images", "import", str(archive))
    if name not in _ctr(sock, "images", "ls", "-q").split():
        raise RuntimeError(f"importing {archive} did not create {name}")
    return name
