// gvshim: the command-line tool of the project.
//   gvshim version
//   gvshim profile check FILE...   validate seccomp profiles with libseccomp (exit 1 if any is invalid)
//   gvshim exec ...                run a snippet through a pod's Execute service
//   gvshim execute-server          (started by the shim) the Execute server of one pod; see
//   shim/execute/wire.h
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "shim/execute/server_main.h"
#include "shim/main/exec_client.h"
#include "shim/seccomp/profile.h"

namespace {

constexpr char kVersion[] = "0.1.0";

int Usage() {
  std::fprintf(
      stderr,
      "usage:\n"
      "  gvshim version\n"
      "  gvshim profile check FILE...   validate seccomp JSON profiles (OCI/Docker format)\n"
      "  gvshim exec --pod NS/NAME | --id ID [--lang python|javascript] (-c CODE | FILE) [--arg k=v ...]\n"
      "                                  run a snippet in a pod's sandbox (gvshim exec --help)\n");
  return 2;
}

int ProfileCheck(const std::vector<std::string>& files) {
  if (files.empty()) return Usage();
  int bad = 0;
  for (const std::string& f : files) {
    auto p = gvshim::seccomp::LoadProfileFile(f);
    if (!p.ok()) {
      std::printf("%s: INVALID: %s\n", f.c_str(), std::string(p.status().message()).c_str());
      ++bad;
      continue;
    }
    const auto& s = p->summary;
    std::string arches = s.architectures.empty() ? "native" : absl::StrJoin(s.architectures, ",");
    std::printf("%s: OK: default %s", f.c_str(), s.default_action.c_str());
    if (s.default_errno != 0) std::printf("(%u)", s.default_errno);
    std::printf(
        ", architectures %s, %d rules: %d allowed, %d denied, %d other syscall names; %d BPF instructions\n",
        arches.c_str(), s.rule_count, s.allowed_syscalls, s.denied_syscalls, s.other_syscalls,
        s.bpf_instructions);
  }
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return Usage();
  if (args[0] == "version" || args[0] == "--version" || args[0] == "-v") {
    std::printf("gvshim %s\n", kVersion);
    return 0;
  }
  if (args[0] == "profile" && args.size() >= 2 && args[1] == "check") {
    return ProfileCheck({args.begin() + 2, args.end()});
  }
  if (args[0] == "exec") return gvshim::cli::ExecMain({args.begin() + 1, args.end()});
  if (args[0] == "execute-server" && args.size() == 1) return gvshim::execute::ExecuteServerMain(0);
  return Usage();
}
