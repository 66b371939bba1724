// A test-only replacement of the global operator new / delete that fails the n-th host
// allocation on any thread and counts live allocations (issue 19's host fault tests: the CPU
// backends in tests/cpu/alloc_fault_test.cc, the CUDA backends in
// tests/cuda/fault_injection_test.cc). Include it in exactly one translation unit of a test
// binary: it defines the replaceable global allocation functions.
//   g_countdown > 0: the g_countdown-th allocation from now fails (std::bad_alloc, or nullptr
//   for the nothrow forms); with g_sticky set, every allocation after it fails too.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace {
std::atomic<long> g_countdown{0};    // > 0: the g_countdown-th allocation from now fails
std::atomic<bool> g_sticky{false};   // and, when set, every allocation after it too
std::atomic<bool> g_failing{false};  // g_sticky and the countdown fired: every allocation fails
std::atomic<long> g_allocs{0};       // allocations made, all threads
std::atomic<long> g_live{0};         // allocations not yet freed, all threads

void* counted_alloc(std::size_t n, std::size_t align, bool nothrow) {
  // Decrement only while positive (a plain fetch_sub could take it below zero when two threads
  // see 1 at once): exactly one allocation sees 1 and fails.
  long c = g_countdown.load(std::memory_order_relaxed);
  while (c > 0 && !g_countdown.compare_exchange_weak(c, c - 1, std::memory_order_relaxed)) {
  }
  if (c == 1 || g_failing.load(std::memory_order_relaxed)) {
    if (g_sticky.load(std::memory_order_relaxed)) g_failing.store(true, std::memory_order_relaxed);
    if (nothrow) return nullptr;
    throw std::bad_alloc();
  }
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n ? n : 1);
  } else if (posix_memalign(&p, align, n ? n : 1) != 0) {
    p = nullptr;
  }
  if (p == nullptr) {
    if (nothrow) return nullptr;
    throw std::bad_alloc();
  }
  g_live.fetch_add(1, std::memory_order_relaxed);
  return p;
}
void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  g_live.fetch_sub(1, std::memory_order_relaxed);
  std::free(p);
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n, 0, false); }
void* operator new[](std::size_t n) { return counted_alloc(n, 0, false); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n, 0, true); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n, 0, true); } catch (...) { return nullptr; }
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a), false);
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a), false);
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n, static_cast<std::size_t>(a), true); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n, static_cast<std::size_t>(a), true); } catch (...) { return nullptr; }
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }
