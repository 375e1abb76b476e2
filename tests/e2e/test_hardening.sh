#!/usr/bin/env bash
# Spec hardening through the real shim + containerd + runsc: the node policy from gvshim.toml's [hardening] table
# (read-only root, tmpfs /tmp, no capabilities, no_new_privs), seccomp profiles chosen per container with the
# dev.gvshim.seccomp-profile annotation, refusal of loosening annotations, and clean failure of Create when a
# profile or the config file is broken.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(hardening_default strict_profile_blocks strict_profile_python_node malformed_profiles
  loosening_annotation config_unparseable)
e2e_require_root_runsc "${CASES[@]}"
e2e_setup

PY_NODE_IMAGE=localhost/gvshim-test:python-node

gvisor_only() { [[ $E2E_RUNTIME == gvisor ]] || skip_case "hardening is done by gvshim (gvisor runtime only)"; }

# loose_config: a copy of the private gvshim.toml whose [hardening] table (the file's last table) also allows
# loosening annotations. Given to one container with `ctr run --runtime-config-path`.
loose_config() {
  local f=$E2E_WORK/loose.toml
  if [[ ! -f $f ]]; then
    cp "$GVS_SHIM_CONFIG" "$f"
    printf '\nallow_annotation_loosening = true\n' >>"$f"
  fi
  echo "$f"
}

# assert_nothing_left ID: after a failed Create, no trace of ID remains anywhere and a normal run still works.
assert_nothing_left() {
  local id=$1
  wait_for 10 no_task "$id"
  runsc_lacks "$id" || fail "runsc still lists $id"
  no_mounts_under "$GVS_STATE" || fail "mounts left under $GVS_STATE: $(mounts_under "$GVS_STATE")"
  assert_eq "" "$(c container ls -q | grep -xF -- "$id" || true)" "containerd container $id"
  # No other container runs between cases, so any shim of our containerd would be the failed one's.
  wait_for 10 no_shims
  local out
  out=$(crun --rm "$E2E_IMAGE" "$id-after" echo still-works)
  assert_eq "still-works" "$out" "a normal run after the failure"
}

hardening_default() {
  gvisor_only
  local out rc
  # Root is read-only; /tmp is a writable tmpfs; no capabilities at all.
  run_rc out rc crun --rm "$E2E_IMAGE" h1 touch /x
  assert_contains "$out" "Read-only file system" "writing to /"
  [[ $rc -ne 0 ]] || fail "touch /x succeeded"
  out=$(crun --rm "$E2E_IMAGE" h2 sh -c 'echo data >/tmp/f && cat /tmp/f && grep " /tmp " /proc/mounts')
  assert_contains "$out" "data" "/tmp writable"
  assert_contains "$out" " /tmp tmpfs " "/tmp is a tmpfs"
  # The default tmpfs is 64m: 70 MB cannot fit (a 10 MB write can).
  run_rc out rc crun --rm "$E2E_IMAGE" h3 sh -c \
    'dd if=/dev/zero of=/tmp/small bs=1M count=10 2>/dev/null && echo small-ok; dd if=/dev/zero of=/tmp/big bs=1M count=70'
  assert_contains "$out" "small-ok" "10 MB into /tmp"
  assert_contains "$out" "No space left on device" "70 MB into a 64m /tmp"
  [[ $rc -ne 0 ]] || fail "dd of 70 MB into /tmp succeeded"
  out=$(crun --rm "$E2E_IMAGE" h4 grep CapEff /proc/self/status)
  assert_eq "CapEff:	0000000000000000" "$out" "effective capabilities"

  # The spec runsc got: read the bundle's config.json while the task runs.
  start_sleeper h5
  local cfg
  cfg=$(bundle_dir h5)/config.json
  [[ -f $cfg ]] || fail "no $cfg"
  assert_eq "true" "$(jq -r '.process.noNewPrivileges' "$cfg")" "process.noNewPrivileges"
  assert_eq "true" "$(jq -r '.root.readonly' "$cfg")" "root.readonly"
  assert_eq "[]" "$(jq -c '.process.capabilities.effective // []' "$cfg")" "process.capabilities.effective"
  assert_eq '"size=64m"' "$(jq -c '.mounts[] | select(.destination == "/tmp") | .options[]
    | select(startswith("size="))' "$cfg")" "/tmp tmpfs size option"
  assert_eq "null" "$(jq -c '.linux.seccomp' "$cfg")" "no seccomp profile by default"
}

strict_profile_blocks() {
  gvisor_only
  local out rc strict=(--annotation dev.gvshim.seccomp-profile=strict)
  # Control without a profile: unshare -U and dmesg (syslog) work, so the refusals below come from seccomp.
  out=$(crun --rm "$E2E_IMAGE" s0 sh -c \
    'grep Seccomp: /proc/self/status; unshare -U true && echo unshare-ok; dmesg >/dev/null && echo dmesg-ok')
  assert_contains "$out" "Seccomp:	0" "control"
  assert_contains "$out" "unshare-ok" "control: unshare -U without a profile"
  assert_contains "$out" "dmesg-ok" "control: dmesg without a profile"

  out=$(crun --rm "${strict[@]}" "$E2E_IMAGE" s1 sh -c '
    exec 2>&1
    grep Seccomp: /proc/self/status
    unshare -U true; echo "unshare-rc=$?"
    mount -t tmpfs none /mnt; echo "mount-rc=$?"
    dmesg >/dev/null; echo "dmesg-rc=$?"
    echo hello | tr a-z A-Z; ls / >/dev/null && echo ls-ok; sh -c "exit 5"; echo "sub-rc=$?"')
  assert_contains "$out" "Seccomp:	2" "strict profile installed"
  assert_contains "$out" "unshare: unshare(0x10000000): Operation not permitted"
  assert_contains "$out" "unshare-rc=1"
  assert_contains "$out" "mount: permission denied" "mount refused with EPERM"
  assert_contains "$out" "mount-rc=1"
  assert_contains "$out" "dmesg: klogctl: Operation not permitted"
  assert_contains "$out" "dmesg-rc=1"
  # Ordinary work is unaffected.
  assert_contains "$out" "HELLO"
  assert_contains "$out" "ls-ok"
  assert_contains "$out" "sub-rc=5"

  # The spec carries the profile, and runsc was told to enforce it.
  start_sleeper s2 "${strict[@]}"
  local cfg
  cfg=$(bundle_dir s2)/config.json
  assert_eq "SCMP_ACT_ERRNO" "$(jq -r '.linux.seccomp.defaultAction' "$cfg")" "linux.seccomp.defaultAction"
  assert_eq "true" "$(jq -r '[.linux.seccomp.syscalls[] | select(.names | index("unshare"))
    | .action == "SCMP_ACT_ERRNO"] | any' "$cfg")" "unshare listed as refused"
}

strict_profile_python_node() {
  gvisor_only
  command -v node >/dev/null || skip_case "needs the host's node for the python-node image"
  if ! bash "$REPO_ROOT/scripts/build-image.sh" --with-python-node --out "$REPO_ROOT/build/image" \
    -a "$GVS_SOCK" -n "$E2E_NS" >/dev/null; then
    fail "python-node image build/import failed"
  fi
  local strict=(--annotation dev.gvshim.seccomp-profile=strict) out
  out=$(crun --rm "${strict[@]}" "$PY_NODE_IMAGE" p1 python3 -c '
import json, subprocess, threading
results = []
def work(n):
    results.append(sum(range(n)))
threads = [threading.Thread(target=work, args=(i * 1000,)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
child = subprocess.run(["sh", "-c", "echo from-child"], capture_output=True, text=True, check=True)
seccomp = [l for l in open("/proc/self/status") if l.startswith("Seccomp:")][0].split()[1]
print(json.dumps({"sums": sorted(results), "child": child.stdout.strip(), "seccomp": seccomp}))')
  assert_eq '{"sums": [0, 499500, 1999000, 4498500], "child": "from-child", "seccomp": "2"}' "$out" "python3"
  out=$(crun --rm "${strict[@]}" "$PY_NODE_IMAGE" n1 node -e '
const fs = require("fs");
const seccomp = fs.readFileSync("/proc/self/status", "utf8").match(/^Seccomp:\s+(\d+)/m)[1];
new Promise((resolve) => setTimeout(() => resolve([1, 2, 3].map((x) => x * 2)), 10))
  .then((v) => console.log(JSON.stringify({ doubled: v, parsed: JSON.parse("{\"a\":1}").a, seccomp })));')
  assert_eq '{"doubled":[2,4,6],"parsed":1,"seccomp":"2"}' "$out" "node"
}

# write_profile NAME: writes one malformed profile into $E2E_WORK/profiles and prints its path.
write_profile() {
  local dir=$E2E_WORK/profiles f
  mkdir -p "$dir"
  f=$dir/$1.json
  case $1 in
    bad-json)
      printf '{\n  "defaultAction": "SCMP_ACT_ERRNO",\n  "syscalls": [\n    {"names": ["read"], "action": "SCMP_ACT_ALLOW"},,\n  ]\n}\n' >"$f" ;;
    unknown-syscall)
      jq -n '{defaultAction: "SCMP_ACT_ERRNO", architectures: ["SCMP_ARCH_X86_64"],
        syscalls: [{names: ["read", "write"], action: "SCMP_ACT_ALLOW"},
                   {names: ["close", "frobnicate"], action: "SCMP_ACT_ALLOW"}]}' >"$f" ;;
    bad-action)
      jq -n '{defaultAction: "SCMP_ACT_ERRNO", architectures: ["SCMP_ARCH_X86_64"],
        syscalls: [{names: ["read"], action: "SCMP_ACT_FROBNICATE"}]}' >"$f" ;;
    bad-arch)
      jq -n '{defaultAction: "SCMP_ACT_ERRNO", architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_PDP11"],
        syscalls: [{names: ["read"], action: "SCMP_ACT_ALLOW"}]}' >"$f" ;;
    *) fail "no such test profile $1" ;;
  esac
  echo "$f"
}

malformed_profiles() {
  gvisor_only
  local cfg name path out rc want
  cfg=$(loose_config)
  for name in bad-json unknown-syscall bad-action bad-arch; do
    path=$(write_profile "$name")
    run_rc out rc crun --rm --runtime-config-path "$cfg" --annotation "dev.gvshim.seccomp-profile=$path" \
      "$E2E_IMAGE" "m-$name" true
    [[ $rc -ne 0 ]] || fail "$name: ctr run succeeded with a malformed profile"
    case $name in
      bad-json) want="$name.json:4:53: malformed JSON" ;;
      unknown-syscall) want="$name.json: syscalls[1].names[1]: unknown syscall \"frobnicate\"" ;;
      bad-action) want="$name.json: syscalls[0].action: unknown action \"SCMP_ACT_FROBNICATE\"" ;;
      bad-arch) want="$name.json: architectures[1]: unknown architecture \"SCMP_ARCH_PDP11\"" ;;
    esac
    assert_contains "$out" "$want" "$name: ctr's message"
    assert_nothing_left "m-$name"
  done
}

loosening_annotation() {
  gvisor_only
  local out rc
  run_rc out rc crun --rm --annotation dev.gvshim.readonly-rootfs=false "$E2E_IMAGE" l1 touch /x
  [[ $rc -ne 0 ]] || fail "a loosening annotation was accepted without allow_annotation_loosening"
  assert_contains "$out" 'annotation dev.gvshim.readonly-rootfs="false" would loosen'
  assert_contains "$out" "allow_annotation_loosening"
  assert_nothing_left l1
  # A host path as profile is loosening too.
  run_rc out rc crun --rm --annotation "dev.gvshim.seccomp-profile=$REPO_ROOT/seccomp-profiles/strict.json" \
    "$E2E_IMAGE" l2 true
  [[ $rc -ne 0 ]] || fail "a host profile path was accepted without allow_annotation_loosening"
  assert_contains "$out" "dev.gvshim.seccomp-profile"
  assert_contains "$out" "allow_annotation_loosening"
  assert_nothing_left l2
  # Tightening needs no permission: a tmpfs smaller than the node's.
  out=$(crun --rm --annotation dev.gvshim.tmpfs=/tmp:8m "$E2E_IMAGE" l3 sh -c \
    'dd if=/dev/zero of=/tmp/f bs=1M count=10 2>&1; echo "dd-rc=$?"')
  assert_contains "$out" "No space left on device" "10 MB into an 8m /tmp"
  # The operator allows loosening: the same annotation makes / writable.
  out=$(crun --rm --runtime-config-path "$(loose_config)" --annotation dev.gvshim.readonly-rootfs=false \
    "$E2E_IMAGE" l4 sh -c 'touch /x && echo root-writable')
  assert_eq "root-writable" "$out" "/ with readonly-rootfs=false and loosening allowed"
}

config_unparseable() {
  gvisor_only
  local f=$E2E_WORK/broken.toml out rc
  # Line 3 is not TOML.
  printf '[runsc]\nplatform = "ptrace"\nnetwork = = "none"\n' >"$f"
  run_rc out rc crun --rm --runtime-config-path "$f" "$E2E_IMAGE" cfg1 true
  [[ $rc -ne 0 ]] || fail "ctr run succeeded with an unparseable config"
  assert_contains "$out" "$f:3:" "file and line in ctr's message"
  assert_nothing_left cfg1
  # A well-formed file with a wrong type in [hardening]: refused, naming the file and the key.
  f=$E2E_WORK/badtype.toml
  printf '[runsc]\nplatform = "ptrace"\n[hardening]\nreadonly_rootfs = "yes"\n' >"$f"
  run_rc out rc crun --rm --runtime-config-path "$f" "$E2E_IMAGE" cfg2 true
  [[ $rc -ne 0 ]] || fail "ctr run succeeded with a wrongly typed [hardening] key"
  assert_contains "$out" "$f:4:" "file and line of the bad key"
  assert_contains "$out" "hardening.readonly_rootfs: must be a boolean, not string"
  assert_nothing_left cfg2
  # A missing explicit config file is an error too, not a silent fallback to defaults.
  f=$E2E_WORK/missing.toml
  run_rc out rc crun --rm --runtime-config-path "$f" "$E2E_IMAGE" cfg3 true
  [[ $rc -ne 0 ]] || fail "ctr run succeeded with a missing config file"
  assert_contains "$out" "$f"
  assert_nothing_left cfg3
}

e2e_run_cases "${CASES[@]}"
