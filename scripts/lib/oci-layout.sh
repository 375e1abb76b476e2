# shellcheck shell=bash
# Writing a one-layer OCI image layout as a tar, and importing it with ctr. Sourced by build-image.sh and
# build-node-image.sh (no registry here: test and node images are built locally and imported).

# oci_layout_tar ROOTFS WORK NAME CONFIG_JSON CREATED_BY OUT
#   Packs ROOTFS as the image's only layer and writes the OCI layout (oci-layout, index.json, blobs/) as the tar
#   OUT, reproducibly: sorted names, owner 0, mtime 0, GNU format (no pax atime/ctime records), so the same
#   inputs give the same digests. CONFIG_JSON is the image config's "config" object (Env, Cmd, Labels, ...);
#   NAME (e.g. docker.io/library/x:tag) goes into index.json's annotations, which `ctr images import` reads.
#   WORK is a scratch directory (left with the layout in it).
oci_layout_tar() {
  local rootfs=$1 work=$2 name=$3 config=$4 created_by=$5 out=$6
  local layout=$work/layout layer=$work/layer.tar
  local layer_digest layer_size config_digest config_size manifest_digest manifest_size
  mkdir -p "$layout/blobs/sha256"
  _oci_tar() { tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu "$@"; }
  # _oci_blob FILE: moves FILE into the layout's blob store; prints "sha256:HEX SIZE".
  _oci_blob() {
    local hex size
    hex=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$layout/blobs/sha256/$hex"
    echo "sha256:$hex $size"
  }
  _oci_tar -C "$rootfs" -cf "$layer" .
  read -r layer_digest layer_size < <(_oci_blob "$layer")
  jq -cn --arg diff "$layer_digest" --argjson config "$config" --arg by "$created_by" '{
      architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
      config: $config,
      rootfs: {type: "layers", diff_ids: [$diff]},
      history: [{created: "1970-01-01T00:00:00Z", created_by: $by}]
    }' >"$work/config.json"
  read -r config_digest config_size < <(_oci_blob "$work/config.json")
  jq -cn --arg cd "$config_digest" --argjson cs "$config_size" --arg ld "$layer_digest" --argjson ls "$layer_size" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $ld, size: $ls}]
    }' >"$work/manifest.json"
  read -r manifest_digest manifest_size < <(_oci_blob "$work/manifest.json")
  jq -cn --arg md "$manifest_digest" --argjson ms "$manifest_size" --arg name "$name" '{
      schemaVersion: 2,
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md, size: $ms,
                   platform: {architecture: "amd64", os: "linux"},
                   annotations: {"io.containerd.image.name": $name,
                                 "org.opencontainers.image.ref.name": ($name | sub("^.*:"; ""))}}]
    }' >"$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  _oci_tar -C "$layout" -cf "$out.tmp" oci-layout index.json blobs
  mv "$out.tmp" "$out"
}

# oci_import ADDRESS NAMESPACE TAR NAME WHO: imports TAR with ctr and checks that NAME now exists (WHO names the
# calling script in the error).
oci_import() {
  local address=$1 namespace=$2 tar=$3 name=$4 who=$5
  ctr -a "$address" -n "$namespace" images import "$tar" >&2
  # grep reads everything (no -q): an early exit would SIGPIPE ctr and fail the pipeline under pipefail.
  if ! ctr -a "$address" -n "$namespace" images ls -q | grep -xF -- "$name" >/dev/null; then
    echo "$who: import did not create $name" >&2
    return 1
  fi
}
