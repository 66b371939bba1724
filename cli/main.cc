// mxq command-line tool.
#include <iostream>
#include <new>
#include <string>

#include "commands.h"
#include "mxq/status.h"
#include "mxq/version.h"

namespace mxq::cli {
int& exit_code() {
  static int code = 0;
  return code;
}
}  // namespace mxq::cli

namespace {
// Exit codes: 0 ok, 1 an error (bad input, a failed check), 3 out of memory (host or device);
// bad command lines exit with CLI11's codes (>= 100).
constexpr int kExitOutOfMemory = 3;

// "mxq 0.1.0 (commit abc1234)"; without the commit when built outside a git checkout.
std::string version_line() {
  std::string v = std::string("mxq ") + mxq::version();
  if (*mxq::build_commit() != '\0') v += std::string(" (commit ") + mxq::build_commit() + ")";
  return v;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mxq: microscaling (MX) quantization for LLM inference"};
  app.require_subcommand(1);
  app.set_version_flag("--version", version_line(), "Print the version (and git commit) and exit");
  mxq::cli::add_demo(app);
  mxq::cli::add_codes(app);
  mxq::cli::add_model_commands(app);
  mxq::cli::add_backend_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const mxq::Error& e) {
    std::cerr << "mxq: " << e.what() << "\n";
    // Out of memory (host or device) is its own exit code: a caller may retry with less.
    return e.status().code() == mxq::StatusCode::kResourceExhausted ? kExitOutOfMemory : 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "mxq: resource exhausted: out of host memory (std::bad_alloc)\n";
    return kExitOutOfMemory;
  }
  return mxq::cli::exit_code();
}
