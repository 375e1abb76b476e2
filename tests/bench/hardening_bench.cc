// Cost of hardening a container spec, per container start. Read the Harden* and LoadProfileFile rows against
// BM_CopySpec (copying the spec's JSON once), which is the floor for any transform that returns a new spec.
#include <cstdlib>
#include <string>

#include "benchmark/benchmark.h"
#include "shim/oci/hardening.h"
#include "shim/seccomp/profile.h"

namespace {

using gvshim::oci::HardeningPolicy;
using nlohmann::json;

std::string Source() {
  const char* env = std::getenv("GVSHIM_SOURCE_DIR");
  return env != nullptr ? env : GVSHIM_SOURCE_DIR;
}

const json& CriSpec() {
  static const json spec = [] {
    auto s = gvshim::oci::LoadSpec(Source() + "/tests/testdata/seccomp/cri-container-spec.json");
    if (!s.ok()) std::abort();
    return *s;
  }();
  return spec;
}

HardeningPolicy StrictPolicy() {
  HardeningPolicy policy;
  policy.profiles_dir = Source() + "/seccomp-profiles";
  policy.seccomp_profile = "strict";
  policy.allowed_capabilities = {"CAP_NET_BIND_SERVICE"};
  policy.force_uid = 1000;
  return policy;
}

void BM_CopySpec(benchmark::State& state) {
  for (auto _ : state) {
    json copy = CriSpec();
    benchmark::DoNotOptimize(copy);
  }
}
BENCHMARK(BM_CopySpec);

// Every transform except the profile.
void BM_HardenNoProfile(benchmark::State& state) {
  HardeningPolicy policy = StrictPolicy();
  policy.seccomp_profile.clear();
  for (auto _ : state) {
    auto result = gvshim::oci::HardenWithProfile(CriSpec(), policy, std::nullopt);
    if (!result.ok()) state.SkipWithError("harden failed");
    benchmark::DoNotOptimize(result);
  }
}
BENCHMARK(BM_HardenNoProfile);

// The profile loaded once (as the shim can cache it) and embedded per container.
void BM_HardenPreloadedStrict(benchmark::State& state) {
  HardeningPolicy policy = StrictPolicy();
  auto profile = gvshim::seccomp::LoadProfileFile(*gvshim::oci::ResolveProfilePath(policy));
  auto oci = gvshim::seccomp::ToOciSeccomp(profile->profile, "strict.json");
  std::optional<json> embedded = *oci;
  for (auto _ : state) {
    auto result = gvshim::oci::HardenWithProfile(CriSpec(), policy, embedded);
    if (!result.ok()) state.SkipWithError("harden failed");
    benchmark::DoNotOptimize(result);
  }
}
BENCHMARK(BM_HardenPreloadedStrict);

// Harden() as the API offers it: reads, validates (libseccomp compile) and converts strict.json every time.
void BM_HardenStrict(benchmark::State& state) {
  HardeningPolicy policy = StrictPolicy();
  for (auto _ : state) {
    auto result = gvshim::oci::Harden(CriSpec(), policy);
    if (!result.ok()) state.SkipWithError("harden failed");
    benchmark::DoNotOptimize(result);
  }
}
BENCHMARK(BM_HardenStrict);

void BM_LoadProfileFileStrict(benchmark::State& state) {
  std::string path = Source() + "/seccomp-profiles/strict.json";
  for (auto _ : state) {
    auto profile = gvshim::seccomp::LoadProfileFile(path);
    if (!profile.ok()) state.SkipWithError("load failed");
    benchmark::DoNotOptimize(profile);
  }
}
BENCHMARK(BM_LoadProfileFileStrict);

}  // namespace
