# mxq_case_list: tests/cases/cases.json (the one list of test and benchmark shapes) embedded
# into a C++ library. Included by tests/cases and bench (either may be built without the other).
include_guard(GLOBAL)
set(_mxq_cases_json ${CMAKE_CURRENT_LIST_DIR}/cases.json)
file(READ ${_mxq_cases_json} MXQ_CASES_JSON)
if(MXQ_CASES_JSON MATCHES "\\)mxqjson\"")
  message(FATAL_ERROR "${_mxq_cases_json} contains the raw-string delimiter )mxqjson\"")
endif()
# configure_file makes the JSON a configure dependency: an edit re-runs CMake.
configure_file(${CMAKE_CURRENT_LIST_DIR}/cases_json.h.in
               ${PROJECT_BINARY_DIR}/generated/cases/mxq_cases_json.h @ONLY)
set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${_mxq_cases_json})
add_library(mxq_case_list STATIC ${CMAKE_CURRENT_LIST_DIR}/case_list.cc)
target_include_directories(mxq_case_list PUBLIC ${CMAKE_CURRENT_LIST_DIR}
                           ${PROJECT_BINARY_DIR}/generated/cases)
target_link_libraries(mxq_case_list PUBLIC mxq_backend_api
                      PRIVATE nlohmann_json::nlohmann_json mxq_warnings)
