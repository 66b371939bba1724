// The shared case list: one list of linear and MoE problems drives the cross-backend tests
// (tests/cases/backend_cases_test.cc runs every backend that can implement a case against
// cpu-reference) and the benchmarks. Cases are plain Problems with a name.
#pragma once

#include <string>
#include <vector>

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

}  // namespace mxq::cases
