// File faults of the writing commands (issue 19): quantize / convert / dequantize under a full
// disk (RLIMIT_FSIZE in a forked child: every write past the limit fails with EFBIG) and under
// SIGKILL at random points mid-write leave the old output intact or none, never a partial
// directory at the target; a killed writer's "<out>.tmp-<pid>" is removed by the next write.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>

#include "mxq/pipeline.h"

namespace mxq::io {
namespace {

namespace fs = std::filesystem;

using Snapshot = std::map<std::string, std::string>;  // file name -> bytes

Snapshot snapshot(const fs::path& d) {
  Snapshot s;
  for (const auto& e : fs::directory_iterator(d)) {
    std::ifstream f(e.path(), std::ios::binary);
    s[e.path().filename().string()] = std::string((std::istreambuf_iterator<char>(f)), {});
  }
  return s;
}

std::vector<std::string> leftovers(const fs::path& d, const std::string& target) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(d)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(target + ".", 0) == 0) out.push_back(n);
  }
  return out;
}

class FileFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("mxq_file_fault_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(write_sample_model(p("bf16")).ok());
    ASSERT_TRUE(quantize_model(p("bf16"), p("q"), QuantizeModelOptions{}).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& n) const { return (dir_ / n).string(); }

  // Runs `write` in a child whose files may not grow past `limit` bytes; returns the child's
  // exit code (0: the write succeeded) and its error message.
  std::pair<int, std::string> run_with_fsize_limit(rlim_t limit,
                                                   const std::function<Status()>& write) {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      ::signal(SIGXFSZ, SIG_IGN);  // writes past the limit fail with EFBIG instead of killing
      const rlimit rl{limit, limit};
      if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) ::_exit(99);
      const Status s = write();
      const std::string m = s.to_string();
      if (::write(fds[1], m.data(), m.size()) < 0) ::_exit(98);
      ::_exit(s.ok() ? 0 : 1);
    }
    ::close(fds[1]);
    std::string msg;
    char buf[512];
    for (ssize_t r; (r = ::read(fds[0], buf, sizeof buf)) > 0;) msg.append(buf, size_t(r));
    ::close(fds[0]);
    int st = 0;
    EXPECT_EQ(::waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFEXITED(st)) << "the writer died of signal " << WTERMSIG(st);
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, msg};
  }

  void expect_full_disk_keeps_old(const std::string& target,
                                  const std::function<Status(bool overwrite)>& write) {
    SCOPED_TRACE(target);
    ASSERT_TRUE(write(false).ok());
    const Snapshot old = snapshot(dir_ / target);
    ASSERT_FALSE(old.empty());
    for (rlim_t limit : {rlim_t(0), rlim_t(4096), rlim_t(1) << 20}) {
      SCOPED_TRACE("RLIMIT_FSIZE " + std::to_string(limit));
      const auto [rc, msg] = run_with_fsize_limit(limit, [&] { return write(true); });
      EXPECT_EQ(rc, 1) << msg;
      EXPECT_NE(msg, "ok");
      EXPECT_FALSE(msg.empty());
      if (limit == 4096) std::printf("full disk: %s\n", msg.c_str());
      EXPECT_EQ(snapshot(dir_ / target), old) << "the old output changed";
      EXPECT_TRUE(leftovers(dir_, target).empty()) << leftovers(dir_, target)[0];
    }
    // A fresh target under a full disk: no output at all.
    const auto [rc, msg] = run_with_fsize_limit(4096, [&] {
      fs::remove_all(dir_ / target);
      return write(false);
    });
    EXPECT_EQ(rc, 1) << msg;
    EXPECT_FALSE(fs::exists(dir_ / target));
    EXPECT_TRUE(leftovers(dir_, target).empty());
  }
  fs::path dir_;
};

TEST_F(FileFaultTest, QuantizeUnderFullDiskKeepsOldOutput) {
  expect_full_disk_keeps_old("q2", [&](bool ow) {
    QuantizeModelOptions o;
    o.overwrite = ow;
    return quantize_model(p("bf16"), p("q2"), o).status();
  });
}

TEST_F(FileFaultTest, ConvertUnderFullDiskKeepsOldOutput) {
  expect_full_disk_keeps_old("ct", [&](bool ow) { return convert_model(p("q"), p("ct"), ow).status(); });
}

TEST_F(FileFaultTest, DequantizeUnderFullDiskKeepsOldOutput) {
  expect_full_disk_keeps_old("dq", [&](bool ow) {
    return dequantize_model(p("q"), p("dq"), DType::kBF16, ow).status();
  });
}

// SIGKILL at random points of a writer that keeps overwriting an output whose old bytes differ
// from the new ones (another element type / dtype): after every kill the target is exactly the
// old output or exactly the new one, never absent (the commit is one RENAME_EXCHANGE) and never
// a mix; on a file system without RENAME_EXCHANGE the target may be missing only while a
// complete "<target>.old-<pid>" is there to be renamed back. The next run cleans up the dead
// writers' temp directories and succeeds.
class SigkillTest : public FileFaultTest {
 protected:
  void kill_at_random_points(const std::string& target, const std::function<Status()>& write_new) {
    SCOPED_TRACE(target);
    const Snapshot old = snapshot(dir_ / target);
    const auto t0 = std::chrono::steady_clock::now();
    {
      const Status s = write_new();  // the new output, once, to know it and the time it takes
      ASSERT_TRUE(s.ok()) << s.to_string();
    }
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - t0).count();
    const Snapshot fresh = snapshot(dir_ / target);
    ASSERT_NE(fresh, old) << "old and new outputs must differ for the test to see a mix";
    std::mt19937 rng(1234);
    int killed = 0, mid_write = 0, saw_old = 0, saw_new = 0;
    constexpr int kRounds = 8;
    for (int round = 0; round < kRounds; ++round) {
      // Start each round from the old output, so a kill can land in the swap itself.
      fs::remove_all(dir_ / target);
      fs::create_directories(dir_ / target);
      for (const auto& [name, bytes] : old) {
        std::ofstream f(dir_ / target / name, std::ios::binary);
        f << bytes;
      }
      const pid_t pid = ::fork();
      if (pid == 0) {
        for (;;) (void)write_new();  // until killed
      }
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % uint32_t(2 * us + 1)));
      ASSERT_EQ(::kill(pid, SIGKILL), 0);
      int st = 0;
      ASSERT_EQ(::waitpid(pid, &st, 0), pid);
      killed += WIFSIGNALED(st);
      const std::vector<std::string> left = leftovers(dir_, target);
      mid_write += !left.empty();
      for (const auto& n : left)
        EXPECT_TRUE(n.rfind(target + ".tmp-", 0) == 0 || n.rfind(target + ".old-", 0) == 0) << n;
      if (fs::exists(dir_ / target)) {
        const Snapshot now = snapshot(dir_ / target);
        saw_old += now == old;
        saw_new += now == fresh;
        EXPECT_TRUE(now == old || now == fresh) << "round " << round << ": partial output";
      } else {
        bool restorable = false;
        for (const auto& n : left)
          restorable |= n.rfind(target + ".old-", 0) == 0 &&
                        (snapshot(dir_ / n) == old || snapshot(dir_ / n) == fresh);
        EXPECT_TRUE(restorable) << "round " << round << ": the target vanished";
      }
      // The next run (here: of the same writer) cleans up and writes the new output.
      const Status s = write_new();
      ASSERT_TRUE(s.ok()) << s.to_string();
      EXPECT_EQ(snapshot(dir_ / target), fresh);
      EXPECT_TRUE(leftovers(dir_, target).empty()) << leftovers(dir_, target)[0];
    }
    EXPECT_EQ(killed, kRounds);
    // The kills landed mid-write (a temp dir left behind) at least once: the checks above saw
    // real interrupted writes, not only kills between two runs.
    EXPECT_GT(mid_write, 0);
    std::printf("%s: %d of %d kills mid-write; target old %d, new %d\n", target.c_str(),
                mid_write, kRounds, saw_old, saw_new);
  }
};

TEST_F(SigkillTest, QuantizeLeavesOldOrNewNeverPartial) {
  QuantizeModelOptions o;
  o.overwrite = true;
  o.quant.elem = ElemType::kE4M3;  // the old output "q" is MXFP4
  ASSERT_TRUE(fs::exists(dir_ / "q"));
  kill_at_random_points("q", [&] { return quantize_model(p("bf16"), p("q"), o).status(); });
  EXPECT_TRUE(verify_model(p("q"), p("bf16")).ok());
}

TEST_F(SigkillTest, ConvertLeavesOldOrNewNeverPartial) {
  QuantizeModelOptions o;
  o.quant.elem = ElemType::kE4M3;
  ASSERT_TRUE(quantize_model(p("bf16"), p("q8"), o).ok());
  ASSERT_TRUE(convert_model(p("q"), p("ct"), false).ok());
  kill_at_random_points("ct", [&] { return convert_model(p("q8"), p("ct"), true).status(); });
}

TEST_F(SigkillTest, DequantizeLeavesOldOrNewNeverPartial) {
  ASSERT_TRUE(dequantize_model(p("q"), p("dq"), DType::kBF16, false).ok());
  kill_at_random_points("dq", [&] {
    return dequantize_model(p("q"), p("dq"), DType::kF32, true).status();
  });
}

// The fallback commit's window (no RENAME_EXCHANGE): a writer killed between moving the old
// output aside and renaming the new one in leaves only "<target>.old-<pid>". The next write of
// the target renames it back first, so it is not lost, and a write without --overwrite then
// refuses to replace it.
TEST_F(FileFaultTest, DeadWritersOldOutputIsRestored) {
  const Snapshot old = snapshot(dir_ / "q");
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  int st = 0;
  ASSERT_EQ(::waitpid(dead, &st, 0), dead);
  const fs::path aside = dir_ / ("q.old-" + std::to_string(dead));
  fs::rename(dir_ / "q", aside);
  fs::create_directories(dir_ / ("q.tmp-" + std::to_string(dead)));  // its unfinished new one
  const Status s = quantize_model(p("bf16"), p("q"), QuantizeModelOptions{}).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_NE(s.message().find("already exists"), std::string::npos) << s.message();
  ASSERT_TRUE(fs::exists(dir_ / "q"));
  EXPECT_EQ(snapshot(dir_ / "q"), old);
  EXPECT_TRUE(leftovers(dir_, "q").empty()) << leftovers(dir_, "q")[0];
}

// Only dead writers' temp directories are removed: a running writer's (another live process,
// here a sleeping child) and unrelated names are kept.
TEST_F(FileFaultTest, StaleTempDirsOfLiveWritersAreKept) {
  const pid_t live = ::fork();
  if (live == 0) {
    ::pause();
    ::_exit(0);
  }
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  int st = 0;
  ASSERT_EQ(::waitpid(dead, &st, 0), dead);
  for (const std::string& n : {"q.tmp-" + std::to_string(live), "q.tmp-" + std::to_string(dead),
                              "q.old-" + std::to_string(dead), std::string("q.tmp-notapid")})
    fs::create_directories(dir_ / n / "x");
  QuantizeModelOptions o;
  o.overwrite = true;
  const Status s = quantize_model(p("bf16"), p("q"), o).status();
  ::kill(live, SIGKILL);
  ::waitpid(live, &st, 0);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_TRUE(fs::exists(dir_ / ("q.tmp-" + std::to_string(live)))) << "a live writer's dir removed";
  EXPECT_FALSE(fs::exists(dir_ / ("q.tmp-" + std::to_string(dead))));
  EXPECT_FALSE(fs::exists(dir_ / ("q.old-" + std::to_string(dead))));
  EXPECT_TRUE(fs::exists(dir_ / "q.tmp-notapid"));
}

}  // namespace
}  // namespace mxq::io
