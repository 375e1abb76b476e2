# The runner's pool of unprivileged uids: every worker (so every job) runs under a uid no other live worker
# has, which makes RLIMIT_NPROC a per-job limit and keeps jobs from signalling each other even where pid
# namespaces are missing (weak mode). A uid returns to the pool when its worker was reaped; a worker is pid 1
# of its own pid namespace, so by then nothing of its job is left running under that uid.

import collections


class UidPool:
    def __init__(self, first, count):
        # Least recently used first: a uid freed just now is the last to be taken again.
        self.free = collections.deque(range(first, first + count))
        self.first, self.count = first, count

    def take(self):
        return self.free.popleft() if self.free else None

    def give_back(self, uid):
        if self.first <= uid < self.first + self.count and uid not in self.free:
            self.free.append(uid)

    def __len__(self):
        return len(self.free)
