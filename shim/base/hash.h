// FNV-1a (64 bit): a stable hash for names derived from ids (socket paths, record files) that other processes
// and versions must be able to compute the same way. Not for anything adversarial.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"

namespace gvshim {

inline constexpr uint64_t kFnv64Offset = 0xcbf29ce484222325ull;

inline uint64_t Fnv1a64(absl::string_view data, uint64_t offset = kFnv64Offset) {
  uint64_t h = offset;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace gvshim
