// Read faults (issue 19): a safetensors file truncated, rewritten or deleted by another process
// after SafetensorsFile::open mapped it. A read past the new end must not kill the process with
// SIGBUS; check_unchanged() names the file and the tensor; the pipelines fail with that error
// before writing any output. A deleted file is still read whole (the mapping holds it).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "io_test_util.h"
#include "mxq/pipeline.h"
#include "mxq/safetensors.h"

namespace mxq::io {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kRows = 512, kCols = 1024;  // one BF16 tensor: 1 MiB

// A single-file BF16 checkpoint of `tensors` linear weights (quantizable), deterministic bytes.
void write_input(const std::string& path, int tensors) {
  std::vector<SafetensorsWriter::Decl> decls;
  for (int i = 0; i < tensors; ++i)
    decls.push_back({"model.layers." + std::to_string(i) + ".mlp.down_proj.weight",
                     StDType::kBF16, {kRows, kCols}});
  auto w = SafetensorsWriter::create(path, decls);
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  std::mt19937 rng(7);
  std::vector<uint8_t> bytes(size_t(kRows * kCols * 2));
  for (int i = 0; i < tensors; ++i) {
    for (size_t j = 0; j < bytes.size(); j += 2) {
      // BF16 values of magnitude ~[2^-8, 2^8): sign, exponent 119..134, random mantissa.
      const uint16_t v = uint16_t((rng() & 0x8000u) | ((119u + rng() % 16u) << 7) | (rng() & 0x7Fu));
      std::memcpy(&bytes[j], &v, 2);
    }
    ASSERT_TRUE(w.value()->write(bytes).ok());
  }
  ASSERT_TRUE(w.value()->finish().ok());
}

std::map<std::string, std::string> read_dir(const std::string& d) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::directory_iterator(d)) {
    std::ifstream f(e.path(), std::ios::binary);
    m[e.path().filename().string()] = std::string((std::istreambuf_iterator<char>(f)), {});
  }
  return m;
}

uint64_t sum(std::span<const uint8_t> b) {
  uint64_t s = 0;
  for (uint8_t v : b) s += v;
  return s;
}

// Runs `body` in a forked child (a SIGBUS there must not take the test binary down); returns
// the child's exit code, or -signal.
int in_child(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) return -1000;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

class ReadFaultTest : public testing::TempDirTest {};

TEST_F(ReadFaultTest, TruncatedAfterOpenIsAnErrorNamingTheTensorNotSigbus) {
  const std::string f = path("in.safetensors");
  write_input(f, 3);
  const int rc = in_child([&] {
    auto sf = SafetensorsFile::open(f);
    if (!sf.ok()) return 10;
    const auto& ts = sf.value()->tensors();
    if (!sf.value()->check_unchanged().ok()) return 11;
    // Cut the file in the middle of the second tensor; reading it touches the lost pages.
    const uint64_t data_start = fs::file_size(f) - ts.back().end;
    if (::truncate(f.c_str(), off_t(data_start + ts[1].begin + ts[1].nbytes() / 2)) != 0) return 12;
    const uint64_t s0 = sum(sf.value()->data(ts[0]));
    const uint64_t s1 = sum(sf.value()->data(ts[1]));  // SIGBUS without the guard
    const uint64_t s2 = sum(sf.value()->data(ts[2]));
    if (s0 == 0 || s1 == 0) return 13;  // intact bytes (the first half of s1) read as they are
    if (s2 != 0) return 14;             // wholly lost: zeros
    const Status s = sf.value()->check_unchanged();
    if (s.code() != StatusCode::kDataLoss) return 15;
    const std::string& m = s.message();
    std::printf("%s\n", s.to_string().c_str());
    std::fflush(stdout);
    if (m.find(f) == std::string::npos) return 16;
    if (m.find("truncated") == std::string::npos) return 17;
    if (m.find("\"" + ts[1].name + "\"") == std::string::npos) return 18;
    return 0;
  });
  EXPECT_EQ(rc, 0) << (rc < 0 ? "the reader died of signal " + std::to_string(-rc)
                              : "failed check " + std::to_string(rc));
}

// What a SIGBUS outside the guarded mappings must end in: the action installed before the guard.
// In a plain build that is the default (the process dies of SIGBUS); under AddressSanitizer it
// is ASan's deadly-signal handler, which reports and then aborts or exits (sanitizer_outcome)
// instead of dying of the signal.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitizerHandlesSigbus = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitizerHandlesSigbus = true;
#else
constexpr bool kSanitizerHandlesSigbus = false;
#endif
#else
constexpr bool kSanitizerHandlesSigbus = false;
#endif

// How ASan's deadly-signal report ends the process, from ASAN_OPTIONS (the ASan ctest runs with
// abort_on_error=1): abort_on_error=1/true -> SIGABRT (returned as -SIGABRT), else exit with
// exitcode=N (default 1). The children's own failure codes are >= 10. The last setting wins, as
// in ASan's own parser (options separated by ':', ',' or spaces).
int sanitizer_outcome() {
  const char* o = std::getenv("ASAN_OPTIONS");
  std::string opts = o != nullptr ? o : "";
  for (char& c : opts)
    if (c == ',' || c == ' ') c = ':';
  bool abort_on_error = false;
  int exit_code = 1;
  size_t at = 0;
  while (at <= opts.size()) {
    const size_t end = std::min(opts.find(':', at), opts.size());
    const std::string kv = opts.substr(at, end - at);
    if (kv.rfind("abort_on_error=", 0) == 0) {
      const std::string v = kv.substr(15);
      abort_on_error = v == "1" || v == "true";
    } else if (kv.rfind("exitcode=", 0) == 0) {
      exit_code = std::atoi(kv.c_str() + 9);
    }
    at = end + 1;
  }
  return abort_on_error ? -SIGABRT : exit_code;
}

void expect_previous_action(int rc) {
  const std::string got = rc < 0 ? "signal " + std::to_string(-rc) : "exit " + std::to_string(rc);
  if (kSanitizerHandlesSigbus) {
    EXPECT_EQ(rc, sanitizer_outcome())
        << "AddressSanitizer's SIGBUS report should end the process as ASAN_OPTIONS says "
           "(abort_on_error: SIGABRT, else its exitcode); got "
        << got;
  } else {
    EXPECT_EQ(rc, -SIGBUS) << "the process should die of SIGBUS; got " << got;
  }
}

TEST_F(ReadFaultTest, SigbusOutsideTheMappingsStillKills) {
  // The guard takes only faults in its mappings: a sent SIGBUS keeps its previous action.
  const int rc = in_child([&] {
    write_input(path("y.safetensors"), 1);
    auto y = SafetensorsFile::open(path("y.safetensors"));  // the guard is installed now
    if (!y.ok()) return 10;
    ::raise(SIGBUS);
    return 0;
  });
  expect_previous_action(rc);
}

TEST_F(ReadFaultTest, FaultInAForeignMappingStillKills) {
  // A real (kernel-raised) SIGBUS at an address the guard does not own: a file mapped by someone
  // else, truncated, then read past its new end. The guard must not repair it; the previous
  // action runs (the faulting read is retried under it).
  const std::string other = path("other.bin");
  {
    std::ofstream o(other, std::ios::binary);
    const std::string bytes(size_t(4) << 16, '\x11');
    o.write(bytes.data(), std::streamsize(bytes.size()));
  }
  const int rc = in_child([&] {
    write_input(path("y.safetensors"), 1);
    auto y = SafetensorsFile::open(path("y.safetensors"));  // the guard is installed now
    if (!y.ok()) return 10;
    const int fd = ::open(other.c_str(), O_RDONLY);
    if (fd < 0) return 11;
    const size_t size = size_t(4) << 16;
    void* m = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (m == MAP_FAILED) return 12;
    if (::truncate(other.c_str(), 0) != 0) return 13;
    volatile const uint8_t* p = static_cast<const uint8_t*>(m);
    return p[size - 1] == 0 ? 20 : 21;  // SIGBUS here; reaching a return is the failure
  });
  expect_previous_action(rc);
}

TEST_F(ReadFaultTest, WrittenInPlaceAfterOpenIsAnError) {
  const std::string f = path("in.safetensors");
  write_input(f, 2);
  auto sf = SafetensorsFile::open(f);
  ASSERT_TRUE(sf.ok()) << sf.status().to_string();
  const TensorInfo& t = sf.value()->tensors()[1];
  const uint64_t before = sum(sf.value()->data(t));
  EXPECT_TRUE(sf.value()->check_unchanged().ok());
  const uint64_t size = fs::file_size(f);
  // Past the file system's timestamp granularity (a jiffy) of the open, same size.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  {
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(std::streamoff(fs::file_size(f) - 4096));
    const std::string junk(4096, '\x55');
    io.write(junk.data(), std::streamsize(junk.size()));
  }
  ASSERT_EQ(fs::file_size(f), size) << "same size";
  EXPECT_NE(sum(sf.value()->data(t)), before) << "the mapping shows the new bytes";
  const Status s = sf.value()->check_unchanged();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.to_string();
  EXPECT_NE(s.message().find(f), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("wrote to it"), std::string::npos) << s.message();
}

TEST_F(ReadFaultTest, DeletedAfterOpenIsStillReadWhole) {
  const std::string f = path("in.safetensors");
  write_input(f, 2);
  auto ck = Checkpoint::open(f);
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  std::vector<uint64_t> sums;
  for (const auto& n : ck.value().names()) sums.push_back(sum(ck.value().find(n)->bytes()));
  ASSERT_TRUE(fs::remove(f));
  size_t i = 0;
  for (const auto& n : ck.value().names()) EXPECT_EQ(sum(ck.value().find(n)->bytes()), sums[i++]);
  EXPECT_TRUE(ck.value().check_unchanged().ok()) << ck.value().check_unchanged().to_string();
}

// A quantize whose input is truncated at a random point while it runs (in a child; 10 rounds):
// the child never dies of a signal; it either succeeds (the cut came after the last read and the
// output then equals a run on the intact input) or fails with an error naming the input file,
// and then leaves no output.
TEST_F(ReadFaultTest, QuantizeOfAShardTruncatedMidRunFailsCleanly) {
  const std::string in = path("in.safetensors"), good = path("good");
  write_input(in, 4);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(quantize_model(in, good, QuantizeModelOptions{}).ok());
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - t0).count();
  std::mt19937 rng(99);
  int failed = 0, mid_read = 0;
  for (int round = 0; round < 10; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    write_input(in, 4);
    const std::string out = path("q") + std::to_string(round);
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      const Status s = quantize_model(in, out, QuantizeModelOptions{}).status();
      const std::string m = s.to_string();
      if (::write(fds[1], m.data(), m.size()) < 0) ::_exit(98);
      ::_exit(s.ok() ? 0 : 1);
    }
    ::close(fds[1]);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % uint32_t(us + 1)));
    ASSERT_EQ(::truncate(in.c_str(), off_t(fs::file_size(in) / 3)), 0);
    std::string msg;
    char buf[512];
    for (ssize_t r; (r = ::read(fds[0], buf, sizeof buf)) > 0;) msg.append(buf, size_t(r));
    ::close(fds[0]);
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st)) << "quantize died of signal " << WTERMSIG(st);
    if (WEXITSTATUS(st) == 0) {
      EXPECT_EQ(msg, "ok");
      EXPECT_EQ(read_dir(out), read_dir(good)) << "a successful run wrote other bytes";
      continue;
    }
    ++failed;
    EXPECT_EQ(WEXITSTATUS(st), 1) << msg;
    EXPECT_NE(msg.find(in), std::string::npos) << "the error names the file: " << msg;
    mid_read += msg.find("changed while being read") != std::string::npos;
    EXPECT_FALSE(fs::exists(out)) << "an output was left after: " << msg;
    for (const auto& e : fs::directory_iterator(dir_))
      EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
    if (round == 0 || mid_read == 1) std::printf("round %d: %s\n", round, msg.c_str());
  }
  std::printf("%d of 10 runs failed, %d of them mid-read\n", failed, mid_read);
  EXPECT_GT(failed, 0) << "no truncation landed before the end of a run: nothing was tested";
}

}  // namespace
}  // namespace mxq::io
