# The version has one source: project(mxq VERSION ...) in the top-level CMakeLists.txt.
#   - include/mxq/version.h (generated into <build>/include/mxq, installed): MXQ_VERSION* macros
#     and mxq::version() / mxq::build_commit();
#   - mxq_build_info: the git commit of the checkout at build time (refreshed on every build,
#     rewritten only when it changes), "" when built outside a git checkout (an sdist);
#   - the CLI's `mxq --version` and Python's mxq.__version__ / mxq.__commit__ read those;
#   - pyproject.toml takes the package version from this file's project() line (regex).
configure_file(${PROJECT_SOURCE_DIR}/cmake/version.h.in ${PROJECT_BINARY_DIR}/include/mxq/version.h
               @ONLY)
set(_mxq_commit_cc ${PROJECT_BINARY_DIR}/generated/build_commit.cc)
add_custom_target(mxq_git_commit
  COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR} -DOUT=${_mxq_commit_cc}
          -P ${PROJECT_SOURCE_DIR}/cmake/git_commit.cmake
  BYPRODUCTS ${_mxq_commit_cc}
  COMMENT "" VERBATIM)
add_library(mxq_build_info STATIC ${_mxq_commit_cc})
add_dependencies(mxq_build_info mxq_git_commit)
target_include_directories(mxq_build_info PUBLIC
  $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include> $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>)
