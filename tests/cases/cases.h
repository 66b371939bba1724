// The shared case list: one list of linear and MoE problems drives the cross-backend tests
// (tests/cases/backend_cases_test.cc runs every backend that can implement a case against
// cpu-reference) and the benchmarks. Cases are plain Problems with a name.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "mxq/backend.h"
#include "mxq/device.h"
#include "mxq/problem.h"

namespace mxq::cases {

struct Case {
  std::string name;  // unique, gtest-safe: [A-Za-z0-9_]
  Problem problem;
};

enum class Tier {
  kQuick,  // CI: awkward small shapes, every format x activation key, all MoE modes
  kFull,   // GPU host: adds real model shapes (FORMATS.md) at several M
};

std::vector<Case> linear_cases(Tier tier);
std::vector<Case> moe_cases(Tier tier);

// Whether the shared case tests run `p` on backend `b` on device `d`: supports(d), then
// check_problem(p) (the oracle's test: declared activation key, then can_implement). The case
// tests and the coverage count below both decide through this one function.
Verdict runs_case(const Backend& b, const Device& d, const Problem& p);

// Per backend, over a case list: how many cases it runs and how many it refuses, per reason.
struct BackendTally {
  std::string name;
  bool reference = false;
  Verdict supported;                       // supports(device)
  int ran = 0;                             // cases runs_case() accepts
  std::map<std::string, int> refused;      // reason -> cases (when supported)
};
std::vector<BackendTally> tally(const std::vector<const Backend*>& backends, const Device& d,
                                const std::vector<Case>& cases);
// One line per failure: a non-reference backend that supports the device but runs none of the
// cases (its refusals are listed). Empty when every such backend runs at least one case.
std::vector<std::string> coverage_failures(const std::vector<BackendTally>& tallies);
// The table printed by the coverage test: backend, supported, ran, refused with reasons.
std::string format_tally(const std::vector<BackendTally>& tallies);

}  // namespace mxq::cases
