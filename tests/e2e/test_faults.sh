#!/usr/bin/env bash
# Faults: the shim SIGKILLed during an exec and during Create, the sandbox SIGKILLed, containerd stopped while
# tasks exit and restarted, 50 ttrpc clients at once, the bundles' filesystem full, and 200 create/delete
# cycles in one shim. After each: containerd sees what happened, and nothing is left (every probe of absence
# first saw the live thing).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(shim_killed_during_exec shim_killed_during_create sandbox_killed containerd_down_while_tasks_exit
  containerd_restart_rereads_address many_ttrpc_clients bundle_fs_full create_delete_cycles)
e2e_require_root_runsc "${CASES[@]}"
[[ $E2E_RUNTIME == gvisor ]] || {
  for n in "${CASES[@]}"; do echo "e2e-case: SKIP $E2E_FILE/$n (gvisor only)"; done
  exit 0
}
# The bundles live on a small tmpfs of their own, so that bundle_fs_full can fill it.
E2E_STATE_TMPFS=64m
e2e_setup

probe() {
  local id=$1; shift
  "$PY" "$E2E_DIR/tools/ttrpc_probe.py" --address "$(shim_address "$id")" --namespace "$E2E_NS" --id "$id" "$@"
}
# task_pid ID: the PID column of `ctr task ls` (for gvshim: the sandbox process on the host).
task_pid() { c task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $2 }'; }
# runsc_pids_of ID: host processes of runsc (sandbox, gofer, CLI) working on container ID: their arguments name
# runsc's id of ID or ID's bundle.
runsc_pids_of() {
  local rid bundle d real args
  rid=$(runsc_id "$1")
  bundle=$(bundle_dir "$1")
  real=$(readlink -f "$GVS_RUNSC")
  for d in /proc/[0-9]*; do
    [[ $(readlink "$d/exe" 2>/dev/null || true) == "$real" ]] || continue
    args=$(tr '\0' '\n' 2>/dev/null <"$d/cmdline") || continue
    if grep -qF -e "$rid" -e "$bundle" <<<"$args"; then echo "${d#/proc/}"; fi
  done
}
no_runsc_pids_of() { [[ -z $(runsc_pids_of "$1") ]]; }
# exec_running ID EXEC: the shim reports EXEC of ID as running (State: status 2).
exec_running() { probe "$1" call State id="$1" exec_id="$2" 2>/dev/null | grep -qx 'f4=2'; }
task_not_running() { [[ $(task_status "$1") != RUNNING ]]; }
# assert_all_gone ID BUNDLE SHIM_PID: after ID's end, no runsc state, runsc process, mount or shim is left.
assert_all_gone() {
  local id=$1 bundle=$2 spid=$3
  wait_for 30 runsc_lacks "$id"
  wait_for 30 no_runsc_pids_of "$id"
  no_mounts_under "$bundle" || fail "mounts left under $bundle: $(mounts_under "$bundle")"
  wait_for 30 pid_gone "$spid"
}
# prove_live ID: shows that every probe used by assert_all_gone sees ID while it runs; prints "BUNDLE SHIM_PID".
prove_live() {
  local id=$1 bundle spid
  bundle=$(bundle_dir "$id")
  spid=$(shim_pid "$id")
  if [[ ! $spid =~ ^[0-9]+$ ]] || ! pid_alive "$spid"; then fail "no live shim for $id (got [$spid])"; fi
  runsc_lists "$id" || fail "the probe does not see $id in runsc's list"
  [[ -n $(runsc_pids_of "$id") ]] || fail "the probe sees no runsc process of $id"
  [[ -n $(mounts_under "$bundle") ]] || fail "the probe sees no mount under $bundle"
  echo "$bundle $spid"
}

shim_killed_during_exec() {
  start_sleeper fx1
  local bundle spid client out
  read -r bundle spid < <(prove_live fx1)
  c task exec --exec-id long fx1 sleep 100000 >"$E2E_WORK/fx1-exec.log" 2>&1 &
  client=$!
  defer kill_if "$client" ctr "--exec-id long"
  wait_for 30 exec_running fx1 long
  kill -KILL "$spid"
  # containerd sees its shim die: it cleans up through `shim delete`, the exec's client and the task end.
  wait_for 60 pid_gone "$client"
  wait_for 60 task_not_running fx1
  local rc
  run_rc out rc c task delete -f fx1
  [[ $rc -eq 0 || $out == *"not found"* ]] || fail "task delete -f after the shim's death: $out"
  wait_for 30 no_task fx1
  assert_all_gone fx1 "$bundle" "$spid"
}

shim_killed_during_create() {
  # runsc with a pause right after `runsc create` returned: the sandbox exists, the shim has not answered
  # Create yet. The shim dies there; containerd must clean the half-made container up.
  local gated=$E2E_WORK/runsc-gated cfg=$E2E_WORK/gated.toml client bundle spid out rc
  mkfifo "$E2E_WORK/create-gate"
  cat >"$gated" <<EOF
#!/bin/sh
"$GVS_RUNSC" "\$@"
rc=\$?
case " \$* " in *" create "*) : >"$E2E_WORK/create-done"; read -r _ <"$E2E_WORK/create-gate" ;; esac
exit \$rc
EOF
  chmod 755 "$gated"
  sed "s|^binary = .*|binary = \"$gated\"|" "$GVS_SHIM_CONFIG" >"$cfg"
  grep -qxF "binary = \"$gated\"" "$cfg" || fail "could not write $cfg"
  defer cleanup_container fx2
  crun -d --runtime-config-path "$cfg" "$E2E_IMAGE" fx2 sleep 100000 >"$E2E_WORK/fx2-run.log" 2>&1 &
  client=$!
  defer kill_if "$client" ctr fx2
  wait_for 60 test -f "$E2E_WORK/create-done"
  bundle=$(bundle_dir fx2)
  spid=$(cat "$bundle/shim.pid")
  if [[ ! $spid =~ ^[0-9]+$ ]] || ! pid_alive "$spid"; then fail "no live shim for fx2 (got [$spid])"; fi
  runsc_lists fx2 || fail "the probe does not see fx2's sandbox in runsc's list"
  [[ -n $(runsc_pids_of fx2) ]] || fail "the probe sees no runsc process of fx2"
  [[ -n $(mounts_under "$bundle") ]] || fail "the probe sees no rootfs mount under $bundle"
  kill -KILL "$spid"
  wait_for 60 pid_gone "$client"
  rc=0
  wait "$client" || rc=$?
  out=$(cat "$E2E_WORK/fx2-run.log")
  [[ $rc -ne 0 ]] || fail "ctr run succeeded although the shim died during Create: $out"
  assert_all_gone fx2 "$bundle" "$spid"
  wait_for 30 no_task fx2
  c container delete fx2 >/dev/null
  # The id is free again.
  assert_eq again "$(crun --rm "$E2E_IMAGE" fx2 echo again)" "a run with the same id afterwards"
}

sandbox_killed() {
  local ev=$E2E_WORK/fx3-events.log bundle spid sandbox out
  start_events "$ev"
  start_sleeper fx3
  read -r bundle spid < <(prove_live fx3)
  sandbox=$(task_pid fx3)
  grep -qxF -- "$sandbox" <<<"$(runsc_pids_of fx3)" || fail "task pid $sandbox is not a runsc process of fx3"
  kill -KILL "$sandbox"
  wait_event "$ev" fx3 /tasks/exit
  wait_for 30 status_is fx3 STOPPED
  out=$(c task delete fx3 2>&1)
  assert_contains "$out" "137" "exit status of a sandbox killed by SIGKILL"
  c container delete fx3
  assert_all_gone fx3 "$bundle" "$spid"
}

containerd_down_while_tasks_exit() {
  # containerd is away for 30 s; the tasks exit meanwhile. Once it is back, every TaskExit reaches it (the shim
  # retries until delivered) and it reports the tasks stopped.
  local ids=(fx4a fx4b fx4c) id start log_mark sandboxes=() shims=() forwarded
  for id in "${ids[@]}"; do
    start_sleeper "$id"
    sandboxes+=("$(task_pid "$id")")
    shims+=("$(shim_pid "$id")")
  done
  log_mark=$(wc -c <"$GVS_LOG")
  start=$SECONDS
  containerd_stop
  for id in "${ids[@]}"; do
    "$GVS_RUNSC" --root "$(runsc_root)" kill "$(runsc_id "$id")" 9
  done
  for id in "${sandboxes[@]}"; do wait_for 30 pid_gone "$id"; done
  for id in "${shims[@]}"; do pid_alive "$id" || fail "shim $id died while containerd was away"; done
  # The rest of the outage (the fault lasts 30 s; the shims keep retrying meanwhile).
  if [[ $((SECONDS - start)) -lt 30 ]]; then sleep $((30 - (SECONDS - start))); fi
  containerd_start
  exits_forwarded() {
    forwarded=$(tail -c +"$((log_mark + 1))" "$GVS_LOG" | grep -c 'msg="event forwarded".*topic=/tasks/exit' || true)
    [[ $forwarded -ge ${#ids[@]} ]]
  }
  wait_for 60 exits_forwarded
  for id in "${ids[@]}"; do
    wait_for 60 status_is "$id" STOPPED
    assert_contains "$(c task delete "$id" 2>&1)" "137" "exit status of $id"
  done
}

containerd_restart_rereads_address() {
  # After a restart containerd finds each shim through <bundle>/address. fx5b's file is spoilt on purpose:
  # containerd must lose that one (the control) and keep fx5a.
  local spid_b bundle_b out
  start_sleeper fx5a
  start_sleeper fx5b
  out=$(probe fx5a connect)
  assert_contains "$out" "shim_pid=$(shim_pid fx5a)" "fx5a's address file reaches its shim"
  bundle_b=$(bundle_dir fx5b)
  spid_b=$(shim_pid fx5b)
  defer kill_if "$spid_b" containerd-shim-gvisor-v1 "-id fx5b"
  echo "unix:///run/containerd/s/gv-no-such-shim" >"$bundle_b/address"
  containerd_stop
  containerd_start
  wait_for 60 status_is fx5a RUNNING
  assert_eq reconnected "$(c task exec --exec-id after fx5a echo reconnected)" "exec after the restart"
  wait_for 60 task_not_running fx5b
  # containerd ran `shim delete` for fx5b: its sandbox is gone; its (unreachable) shim is ours to stop.
  wait_for 30 runsc_lacks fx5b
  kill_if "$spid_b" containerd-shim-gvisor-v1 "-id fx5b"
  wait_for 15 pid_gone "$spid_b"
}

many_ttrpc_clients() {
  start_sleeper fx6
  local spid out before during after
  spid=$(shim_pid fx6)
  out=$(probe fx6 concurrent --clients 50 --calls 20 --shim-pid "$spid")
  echo "$out" >&2
  assert_contains "$out" "failed_calls=0"
  assert_contains "$out" "ok_calls=1000"
  before=$(sed -n 's/^fds_before=//p' <<<"$out")
  during=$(sed -n 's/^fds_during=//p' <<<"$out")
  after=$(sed -n 's/^fds_after=//p' <<<"$out")
  # The fd probe saw the 50 connections, and they were all released.
  [[ $during -ge $((before + 50)) ]] || fail "50 open connections not seen in the shim's fds ($before -> $during)"
  [[ $after -le $before ]] || fail "the shim kept fds after its clients left ($before -> $after)"
  pid_alive "$spid" || fail "the shim died"
  assert_eq still-serving "$(c task exec --exec-id after fx6 echo still-serving)"
}

# fill_state_fs LEAVE_PAGES: fills the bundles' tmpfs so that exactly LEAVE_PAGES pages stay free.
fill_state_fs() {
  local fill=$GVS_STATE/filler avail
  rm -f "$fill"
  dd if=/dev/zero of="$fill" bs=64k status=none 2>/dev/null || true
  avail=$(df --output=avail -B 4096 "$GVS_STATE" | tail -n 1 | tr -d ' ')
  [[ $avail -eq 0 ]] || fail "could not fill $GVS_STATE ($avail pages free)"
  if [[ $1 -gt 0 ]]; then truncate -s "-$(($1 * 4096))" "$fill"; fi
}

bundle_fs_full() {
  # The bundles' filesystem is full with 0..12 pages left: each exec and each container create either works or
  # fails with the error named, and leaves nothing behind; the running container and the shim are unharmed.
  e2e_prove_probes  # now: it needs a container to start, which a full disk prevents
  start_sleeper fx7
  local bundle spid k out rc ok=0 failed=0
  read -r bundle spid < <(prove_live fx7)
  only_fx7_shim() { [[ $(our_shim_pids) == "$spid" ]]; }
  defer rm -f "$GVS_STATE/filler"
  for k in 0 1 2 3 4 6 8 12; do
    fill_state_fs "$k"
    run_rc out rc c task exec --exec-id "full$k" fx7 echo exec-ok
    if [[ $rc -eq 0 ]]; then
      assert_eq exec-ok "$out" "exec with $k pages free"
    else
      assert_contains "${out,,}" "no space left on device" "exec with $k pages free"
    fi
    assert_eq "" "$(find "$bundle" -maxdepth 1 -name 'exec-*')" "exec files left in the bundle ($k pages free)"
    run_rc out rc crun -d "$E2E_IMAGE" "fz$k" sleep 100000
    if [[ $rc -eq 0 ]]; then
      ok=$((ok + 1))
      # Created with the disk (nearly) full: it must also go away with the disk full.
      run_rc out rc c task kill -s SIGKILL "fz$k"
      [[ $rc -eq 0 ]] || fail "kill of fz$k ($k pages free): $out"
      wait_for 30 status_is "fz$k" STOPPED
      run_rc out rc c task delete "fz$k"
      [[ $rc -eq 0 ]] || fail "task delete of fz$k ($k pages free): $out"
      run_rc out rc c container delete "fz$k"
      [[ $rc -eq 0 ]] || fail "container delete of fz$k ($k pages free): $out"
    else
      failed=$((failed + 1))
      echo "create with $k pages free: $out" >&2
      assert_contains "${out,,}" "no space left on device" "create with $k pages free"
      wait_for 30 no_task "fz$k"
      c container delete "fz$k" >/dev/null 2>&1 || true
    fi
    # Either way nothing of fz$k remains, and fx7's shim is the only one.
    wait_for 30 runsc_lacks "fz$k"
    no_mounts_under "$(bundle_dir "fz$k")" || fail "mounts left for fz$k"
    # A daemon containerd abandoned after start exits 20 s later by itself (kFirstCreateTimeout).
    wait_for 60 only_fx7_shim
    [[ ! -e $(bundle_dir "fz$k") ]] || fail "bundle of fz$k left ($k pages free)"
  done
  echo "creates with the disk full: $ok worked, $failed failed" >&2
  [[ $failed -gt 0 ]] || fail "no create failed: the sweep never reached a full disk"
  rm -f "$GVS_STATE/filler"
  # With space again, everything works and fx7 was never harmed.
  assert_eq running "$(c task exec --exec-id after fx7 echo running)"
  assert_eq works "$(crun --rm "$E2E_IMAGE" fz-after echo works)"
  assert_eq RUNNING "$(task_status fx7)"
}

create_delete_cycles() {
  # 200 containers made and removed one after another in one shim (they share a CRI sandbox id, so one shim
  # serves them all while fx8-anchor runs): its fds and threads, the mounts and the runsc processes must not
  # grow.
  local pod=(--annotation io.kubernetes.cri.sandbox-id=fx8pod) spid i fds0 thr0 mnt0 procs0 t0
  start_sleeper fx8-anchor "${pod[@]}"
  spid=$(shim_pid fx8-anchor)
  shim_fds() { find "/proc/$spid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
  shim_threads() { find "/proc/$spid/task" -mindepth 1 -maxdepth 1 | wc -l; }
  state_mounts() { mounts_under "$GVS_STATE" | wc -l; }
  our_runsc_procs() {
    local d real n=0
    real=$(readlink -f "$GVS_RUNSC")
    for d in /proc/[0-9]*; do
      [[ $(readlink "$d/exe" 2>/dev/null || true) == "$real" ]] || continue
      tr '\0' '\n' 2>/dev/null <"$d/cmdline" | grep -qF -- "$E2E_TMP/" && n=$((n + 1))
    done
    echo "$n"
  }
  cycle() { crun --rm "${pod[@]}" "$E2E_IMAGE" fx8 true >/dev/null; }
  for i in 1 2 3; do cycle; done  # warm up
  fds0=$(shim_fds) thr0=$(shim_threads) mnt0=$(state_mounts) procs0=$(our_runsc_procs)
  # The probes see a second container of the pod: more fds, a mount, more runsc processes.
  crun -d "${pod[@]}" "$E2E_IMAGE" fx8 sleep 100000 >/dev/null
  wait_for 30 status_is fx8 RUNNING
  [[ $(shim_fds) -gt $fds0 ]] || fail "the fd probe does not see a second container's fds"
  [[ $(state_mounts) -gt $mnt0 ]] || fail "the mount probe does not see a second container's rootfs"
  [[ $(our_runsc_procs) -gt $procs0 ]] || fail "the process probe does not see a second container's sandbox"
  cleanup_container fx8
  t0=$SECONDS
  for ((i = 1; i <= 200; i++)); do cycle || fail "cycle $i failed"; done
  echo "200 create/start/delete cycles in $((SECONDS - t0)) s" >&2
  runsc_procs_back() { [[ $(our_runsc_procs) -le $procs0 ]]; }
  wait_for 30 runsc_procs_back
  assert_eq "$mnt0" "$(state_mounts)" "mounts under the state dir"
  assert_eq "$thr0" "$(shim_threads)" "shim threads"
  [[ $(shim_fds) -le $fds0 ]] || fail "shim fds grew from $fds0 to $(shim_fds)"
  pid_alive "$spid" || fail "the pod's shim died"
}

e2e_run_cases "${CASES[@]}"
