// Subcommands of the `mxq` CLI. Each registers itself on the CLI11 app and runs through a
// callback returning the process exit code; no math lives here (it is all in the library).
#pragma once

#include <CLI/CLI.hpp>

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

}  // namespace mxq::cli
