// The one list of shapes for tests and benchmarks: tests/cases/cases.json, embedded into the
// binary at configure time (an edit re-runs CMake). The shared backend cases (cases.cc) and
// bench/gemv_bench.cc read it through this header; bench/cuda_gemm_bench.py and
// bench/cuda_moe_bench.py read the same file. A malformed or incomplete file is a hard error
// (the message names the missing entry): a reader never falls back to a built-in list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mxq/model.h"
#include "mxq/problem.h"

namespace mxq::cases {

struct Shape {  // a linear layer's N x K
  std::string name;
  int64_t n = 0, k = 0;
};

struct Mnk {
  int64_t m = 0, n = 0, k = 0;
};

struct MoELayer {  // one MoE layer (Problem::moe: n = h, k = i)
  std::string name;
  int64_t h = 0, i = 0, e = 0, k = 0;
  io::GateUpLayout layout = io::GateUpLayout::kChunked;
  MoEActivation act = MoEActivation::kSiluAndMul;
  Routing routing = Routing::kSoftmaxTopK;
  int64_t n_group = 1, topk_group = 1;
  bool bias = false, correction_bias = false;
  float routed_scaling = 1.0f;
};

// "sets" entries.
struct Sweep {  // shapes x token counts
  std::vector<Shape> shapes;
  std::vector<int64_t> ms;
};
struct MoESweep {
  std::string name;  // test-name stem
  MoELayer layer;
  std::vector<int64_t> ms;
};

struct QuickLinear {
  Mnk every_format, f32_out, act_rule;
  std::vector<std::pair<int64_t, int64_t>> awkward_nk;
  std::vector<int64_t> awkward_ms;
};

struct CaseList {
  QuickLinear tests_quick_linear;
  std::vector<MoESweep> tests_quick_moe;  // in the file's order
  Sweep tests_full_linear;
  std::vector<MoESweep> tests_full_moe;
  Sweep gemv_bench;                  // shapes x ms, `dram` rotation
  std::vector<Shape> gemv_llc_shapes;  // the cache-resident subset
};

// The parsed embedded file; throws std::runtime_error naming the bad entry (parsed once).
const CaseList& case_list();
// Parses a JSON text of the same schema (the embedded file goes through this; tests use it to
// check that a broken file is refused).
CaseList parse_case_list(const std::string& json_text);

}  // namespace mxq::cases
