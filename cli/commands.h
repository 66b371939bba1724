// Subcommands of the `mxq` CLI. Each registers itself on the CLI11 app and runs through a
// callback returning the process exit code; no math lives here (it is all in the library).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "mxq/problem.h"

namespace mxq::cli {

// Exit code a subcommand reports; set by the subcommand's callback.
int& exit_code();

void add_demo(CLI::App& app);   // the numerics demo on an embedded sample (main job for now)
void add_codes(CLI::App& app);  // decode tables / element encodes, the test interface
// Checkpoint commands: sample, quantize, inspect, convert, verify (cli/model_cmds.cc).
void add_model_commands(CLI::App& app);
// Backend commands: explain (cli/backend_cmds.cc), run (cli/run_cmd.cc).
void add_backend_commands(CLI::App& app);
void add_run_command(CLI::App& app);
void add_bench_command(CLI::App& app);  // cli/bench_cmd.cc

// The problem flags of `explain` and `bench` (--op, --weights, --act, --m, ...): one definition.
struct ProblemArgs {
  std::string op = "linear", weights = "mxfp4", act = "bf16", out, activation = "silu",
              layout = "chunked", routing = "softmax-topk";
  int64_t m = 1, n = 4096, k = 4096, experts = 8, topk = 2, n_group = 1, topk_group = 1;
  bool bias = false;
};
struct ProblemOptions {
  CLI::Option* act = nullptr;        // --act (also meaningful with a model: the override)
  std::vector<CLI::Option*> shape;   // every other problem flag
};
ProblemOptions add_problem_options(CLI::App* c, ProblemArgs& a);
Problem make_problem(const ProblemArgs& a);  // throws mxq::Error on a bad name

}  // namespace mxq::cli
