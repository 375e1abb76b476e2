#include "shim/process/rootfs.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_join.h"
#include "shim/base/log.h"
#include "shim/base/status.h"

namespace gvshim::process {

MountArgs ParseMountOptions(const std::string& type, const std::vector<std::string>& options) {
  struct Flag {
    bool clear;
    unsigned long bit;
  };
  static const auto* flags = new absl::flat_hash_map<std::string, Flag>{
      {"ro", {false, MS_RDONLY}},
      {"rw", {true, MS_RDONLY}},
      {"nosuid", {false, MS_NOSUID}},
      {"suid", {true, MS_NOSUID}},
      {"nodev", {false, MS_NODEV}},
      {"dev", {true, MS_NODEV}},
      {"noexec", {false, MS_NOEXEC}},
      {"exec", {true, MS_NOEXEC}},
      {"sync", {false, MS_SYNCHRONOUS}},
      {"async", {true, MS_SYNCHRONOUS}},
      {"noatime", {false, MS_NOATIME}},
      {"atime", {true, MS_NOATIME}},
      {"nodiratime", {false, MS_NODIRATIME}},
      {"relatime", {false, MS_RELATIME}},
      {"strictatime", {false, MS_STRICTATIME}},
      {"bind", {false, MS_BIND}},
      {"rbind", {false, MS_BIND | MS_REC}},
      {"remount", {false, MS_REMOUNT}},
  };
  MountArgs out;
  std::vector<std::string> data;
  for (const std::string& o : options) {
    auto it = flags->find(o);
    if (it == flags->end()) {
      data.push_back(o);
      continue;
    }
    if (it->second.clear) {
      out.flags &= ~it->second.bit;
    } else {
      out.flags |= it->second.bit;
    }
  }
  if (type == "bind" || (out.flags & MS_BIND)) {
    out.bind = true;
    out.flags |= MS_BIND;
  }
  out.data = absl::StrJoin(data, ",");
  return out;
}

absl::StatusOr<std::unique_ptr<Rootfs>> Rootfs::Mount(const std::vector<MountSpec>& mounts,
                                                      const std::string& target) {
  if (::mkdir(target.c_str(), 0711) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir " + target);
  auto rootfs = std::unique_ptr<Rootfs>(new Rootfs(target, 0));
  for (const MountSpec& m : mounts) {
    MountArgs args = ParseMountOptions(m.type, m.options);
    const char* type = args.bind ? nullptr : m.type.c_str();
    unsigned long ro = MS_RDONLY;
    unsigned long first = args.flags & ~(args.bind ? ro : 0UL);
    if (::mount(m.source.c_str(), target.c_str(), type, first,
                args.data.empty() ? nullptr : args.data.c_str()) != 0) {
      absl::Status st = ErrnoStatus(errno, "mount " + m.type + " " + m.source + " on " + target);
      return st;  // the destructor unmounts what was mounted before
    }
    rootfs->count_++;
    // A read-only bind mount needs a remount to take effect.
    if (args.bind && (args.flags & MS_RDONLY)) {
      if (::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
        return ErrnoStatus(errno, "remount read-only " + target);
      }
    }
  }
  return rootfs;
}

Rootfs::~Rootfs() {
  if (absl::Status st = Unmount(); !st.ok()) log::Warnf("%s", st.ToString());
}

absl::Status Rootfs::Unmount() {
  while (count_ > 0) {
    if (::umount2(target_.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
      return ErrnoStatus(errno, "umount " + target_);
    }
    count_--;
  }
  return absl::OkStatus();
}

absl::Status UnmountAll(const std::string& target) {
  for (int i = 0; i < 32; ++i) {
    if (::umount2(target.c_str(), MNT_DETACH) != 0) {
      if (errno == EINVAL || errno == ENOENT) return absl::OkStatus();  // not a mount point (any more)
      return ErrnoStatus(errno, "umount " + target);
    }
  }
  return absl::OkStatus();
}

}  // namespace gvshim::process
