// mxq command-line tool.
#include <iostream>

#include "commands.h"
#include "mxq/status.h"

namespace mxq::cli {
int& exit_code() {
  static int code = 0;
  return code;
}
}  // namespace mxq::cli

int main(int argc, char** argv) {
  CLI::App app{"mxq: microscaling (MX) quantization for LLM inference"};
  app.require_subcommand(1);
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
    return 1;
  }
  return mxq::cli::exit_code();
}
