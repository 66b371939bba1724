// SIGBUS guard for the reader's file mappings (issue 19): a safetensors file truncated by another
// process after SafetensorsFile::open mapped it makes every read of a page past its new end raise
// SIGBUS, which would kill the process. The handler installed here replaces such a page of a
// registered mapping with a page of zeros (so the faulting read completes), records where the
// first fault was, and returns; SafetensorsFile::check_unchanged() then reports the file as
// changed while being read, naming the tensor, and the pipelines fail before committing any
// output. A SIGBUS outside the registered mappings goes to the handler that was installed
// before (or the default action: the process dies as it would have).
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>

#include "io/internal.h"

namespace mxq::io::internal {

namespace {

// Mappings guarded at once (one per open safetensors file); files beyond it are read unguarded.
constexpr int kSlots = 4096;

struct Slot {
  std::atomic<bool> used{false};
  std::atomic<uintptr_t> base{0}, end{0};  // end first, base last (base != 0: in use)
  std::atomic<int64_t> fault{-1};          // offset of the first faulting read, -1: none
};
Slot g_slots[kSlots];
struct sigaction g_previous {};
uintptr_t g_page = 4096;
std::once_flag g_installed;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(info->si_addr);
  const bool fault = info->si_code > 0;  // raised by the kernel for a read, not kill()/raise()
  for (Slot& s : g_slots) {
    if (!fault) break;
    const uintptr_t b = s.base.load(std::memory_order_acquire);
    if (b == 0 || a < b || a >= s.end.load(std::memory_order_relaxed)) continue;
    const int saved = errno;
    // The raw system call: async-signal-safe, and no sanitizer interceptor in the way.
    const long r = ::syscall(SYS_mmap, a & ~(g_page - 1), g_page, PROT_READ,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    errno = saved;
    if (r == -1) break;  // cannot repair: treat it as not ours
    int64_t none = -1;
    s.fault.compare_exchange_strong(none, int64_t(a - b));
    return;  // the read is retried and now sees zeros
  }
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
  } else {
    // Default action: restore it and return, so the faulting read runs again and kills us (a
    // sent signal is sent again).
    ::signal(SIGBUS, SIG_DFL);
    if (!fault) ::raise(SIGBUS);
  }
}

void install() {
  g_page = uintptr_t(::sysconf(_SC_PAGESIZE));
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, &g_previous);
}

}  // namespace

int guard_mapping(const void* base, size_t size) {
  std::call_once(g_installed, install);
  for (int i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (!g_slots[i].used.compare_exchange_strong(expected, true)) continue;
    g_slots[i].fault.store(-1, std::memory_order_relaxed);
    g_slots[i].end.store(reinterpret_cast<uintptr_t>(base) + size, std::memory_order_relaxed);
    g_slots[i].base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_release);
    return i;
  }
  return -1;
}

void unguard_mapping(int slot) {
  if (slot < 0 || slot >= kSlots) return;
  g_slots[slot].base.store(0, std::memory_order_release);
  g_slots[slot].end.store(0, std::memory_order_relaxed);
  g_slots[slot].used.store(false, std::memory_order_release);
}

int64_t mapping_fault_offset(int slot) {
  if (slot < 0 || slot >= kSlots) return -1;
  return g_slots[slot].fault.load(std::memory_order_acquire);
}

}  // namespace mxq::io::internal
