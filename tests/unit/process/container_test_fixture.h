// The fixture of the process::Container tests (container_test.cc, container_exec_test.cc,
// container_race_test.cc): a Container against FakeRunsc, whose real child processes stand in for the sandbox
// and the execs, so exits arrive through the test binary's reaper (handed to the Container) as they do in the
// shim.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/process/container.h"
#include "tests/unit/fakes/fake_runsc.h"
#include "tests/unit/fakes/recording_publisher.h"

namespace gvshim::process::testing {

using ::gvshim::testing::FakeRunsc;
using ::gvshim::testing::RecordedEvent;
using ::gvshim::testing::RecordingPublisher;
using namespace ::gvshim::testing::event_types;  // NOLINT

// Generous: these only bound a wait for something that normally happens in milliseconds.
constexpr absl::Duration kTimeout = absl::Seconds(20);

inline std::string ProcessJson(const std::string& shell) {
  nlohmann::json j = {{"args", {"/bin/sh", "-c", shell}}, {"cwd", "/"}};
  return j.dump();
}

inline stdio::StdioConfig StdoutTo(const std::string& path) {
  stdio::StdioConfig c;
  c.stdout_path = path;
  return c;
}

inline uint32_t Status999(const absl::StatusOr<ExitInfo>& e) { return e.ok() ? e->status : 999; }

// Matches the TaskExit of one process (exec id, or the container id for the init).
inline RecordingPublisher::Match ExitOf(const std::string& id) {
  return [id](const RecordedEvent& e) { return e.As<containerd::events::TaskExit>().id() == id; };
}

class ContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvpt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    bundle_ = tmpl;
  }
  void TearDown() override {
    // Let every child go (a joining container's destructor waits for its `runsc wait`), then drop the
    // container.
    fake_.KillAll();
    container_.reset();
    std::error_code ec;
    std::filesystem::remove_all(bundle_, ec);
  }

  ContainerOptions Options(const std::string& id = "c1") {
    ContainerOptions o;
    o.id = id;
    o.ns = "testns";
    o.bundle = bundle_;
    return o;
  }

  absl::Status Create(ContainerOptions o) {
    auto c = Container::Create({&fake_, &events_, &::gvshim::testing::TestReaper()}, std::move(o));
    if (!c.ok()) return c.status();
    container_ = std::move(*c);
    return absl::OkStatus();
  }
  void CreateAndStart(ContainerOptions o) {
    ASSERT_TRUE(Create(std::move(o)).ok());
    auto pid = container_->Start("");
    ASSERT_TRUE(pid.ok()) << pid.status();
  }

  // Waits for the TaskExit of `id` and returns its event index.
  size_t WaitExit(const std::string& id) {
    auto i = events_.WaitFor(kTaskExit, kTimeout, ExitOf(id));
    EXPECT_TRUE(i.has_value()) << "no TaskExit for " << id;
    return i.value_or(0);
  }
  containerd::events::TaskExit ExitEvent(const std::string& id) {
    auto i = events_.Find(kTaskExit, ExitOf(id));
    return i ? events_.Events()[*i].As<containerd::events::TaskExit>() : containerd::events::TaskExit();
  }
  Status StateOf(const std::string& exec_id) {
    auto st = container_->State(exec_id);
    EXPECT_TRUE(st.ok()) << st.status();
    return st.ok() ? st->status : Status::kDeleted;
  }

  std::string bundle_;
  FakeRunsc fake_;
  RecordingPublisher events_;
  std::unique_ptr<Container> container_;
};

}  // namespace gvshim::process::testing
