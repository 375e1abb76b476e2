// Mounts containerd's rootfs mounts (usually one overlay from the snapshotter) at <bundle>/rootfs and
// unmounts them when the owner goes away.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gvshim::process {

struct MountSpec {
  std::string type;
  std::string source;
  std::vector<std::string> options;
};

// Splits mount options into MS_* flags and the data string ("ro", "nosuid", "rbind"... are flags; the rest,
// e.g. "lowerdir=...", is data). Pure; unit-tested.
struct MountArgs {
  unsigned long flags = 0;
  std::string data;
  bool bind = false;
};
MountArgs ParseMountOptions(const std::string& type, const std::vector<std::string>& options);

class Rootfs {
 public:
  // Mounts every spec on `target` in order; on failure unmounts what was mounted. An empty list mounts
  // nothing (the bundle already has a rootfs directory).
  static absl::StatusOr<std::unique_ptr<Rootfs>> Mount(const std::vector<MountSpec>& mounts,
                                                       const std::string& target);
  ~Rootfs();  // Unmount(), errors logged
  absl::Status Unmount();

 private:
  explicit Rootfs(std::string target, int count) : target_(std::move(target)), count_(count) {}
  std::string target_;
  int count_;
};

// Unmounts everything mounted at `target` (lazily, repeatedly until nothing is left). Used by `delete` after
// a shim died, where nothing is known about what was mounted.
absl::Status UnmountAll(const std::string& target);

}  // namespace gvshim::process
