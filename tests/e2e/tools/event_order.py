#!/usr/bin/python3
"""Checks the order of task events captured with `ctr events`.

  event_order.py EVENTS_FILE CONTAINER_ID EXPECTED...

EXPECTED items are topics (`/tasks/start`) or `topic:id` for events that carry a process id (`/tasks/exit:e1`
means the exit of process e1; the init process's id is the container id). They must appear in this order (other
events may come between). Prints the events seen for the container and exits 1 on a mismatch.
"""
import json
import sys


def main() -> int:
    path, cid, expected = sys.argv[1], sys.argv[2], sys.argv[3:]
    seen = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            i = line.find(" /")
            if i < 0:
                continue
            rest = line[i + 1:].strip()
            topic, _, body = rest.partition(" ")
            try:
                ev = json.loads(body) if body else {}
            except json.JSONDecodeError:
                continue
            if ev.get("container_id") != cid:
                continue
            pid_id = ev.get("exec_id") or ev.get("id") or ""
            seen.append(f"{topic}:{pid_id}" if pid_id else topic)
    print("events for", cid, ":", " ".join(seen))
    pos = 0
    for want in expected:
        while pos < len(seen) and not (seen[pos] == want or (":" not in want and seen[pos].split(":")[0] == want)):
            pos += 1
        if pos == len(seen):
            print(f"missing or out of order: {want}")
            return 1
        pos += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
