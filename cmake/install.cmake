# The installable library (issue 20): `cmake --install <build> --prefix P` puts
#   P/include/mxq/*.h            the public headers (and the generated version.h)
#   P/lib/libmxq.a, libmxq.so*   one static and one shared library: every mxq component library
#                                the CLI links (core, io, formats, pipelines, oracle, the CPU
#                                backends and, when the CUDA part is built, the CUDA backends)
#   P/lib/cmake/mxq/             mxqConfig.cmake, mxqConfigVersion.cmake, mxqTargets*.cmake
#   P/bin/mxq                    the CLI
# Consumers: find_package(mxq CONFIG REQUIRED) + target_link_libraries(app mxq::mxq) (shared;
# mxq::mxq_static / mxq::mxq_shared name one; MXQ_USE_STATIC_LIBS=ON makes mxq::mxq the static
# one). The combined libraries reuse the component libraries' object files (all PIC), so they
# add two link steps to a build, no compilation. tests/install/ checks it (ctest install_package).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The component libraries, found by walking the link graph of what the CLI links, so a new
# component library (or the CUDA ones) is picked up without a list to keep in sync.
set(_mxq_components)
set(_mxq_todo mxq_pipeline mxq_select mxq_shard mxq_build_info)
while(_mxq_todo)
  list(POP_FRONT _mxq_todo t)
  if(NOT TARGET ${t} OR t IN_LIST _mxq_components)
    continue()
  endif()
  get_target_property(_type ${t} TYPE)
  get_target_property(_imported ${t} IMPORTED)
  if(_imported OR NOT _type MATCHES "^(STATIC|OBJECT)_LIBRARY$")
    continue()
  endif()
  list(APPEND _mxq_components ${t})
  get_target_property(_deps ${t} LINK_LIBRARIES)
  if(_deps)
    foreach(d ${_deps})
      if(d MATCHES "^mxq_")
        list(APPEND _mxq_todo ${d})
      endif()
    endforeach()
  endif()
endwhile()
set(_mxq_objects)
foreach(t ${_mxq_components})
  list(APPEND _mxq_objects $<TARGET_OBJECTS:${t}>)
endforeach()
message(STATUS "mxq: installable libmxq from ${_mxq_components}")

add_library(mxq_lib_static STATIC ${_mxq_objects})
add_library(mxq_lib_shared SHARED ${_mxq_objects})
set_target_properties(mxq_lib_static PROPERTIES OUTPUT_NAME mxq EXPORT_NAME mxq_static
                      LINKER_LANGUAGE CXX)
set_target_properties(mxq_lib_shared PROPERTIES OUTPUT_NAME mxq EXPORT_NAME mxq_shared
                      LINKER_LANGUAGE CXX VERSION ${PROJECT_VERSION}
                      SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
foreach(t mxq_lib_static mxq_lib_shared)
  add_dependencies(${t} ${_mxq_components})
  target_include_directories(${t} INTERFACE
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_features(${t} INTERFACE cxx_std_20)  # the public headers use <span>
endforeach()
# The shared library records its own dependencies (DT_NEEDED); consumers of the static one link
# them (mxqConfig.cmake finds them).
target_link_libraries(mxq_lib_static INTERFACE Threads::Threads)
target_link_libraries(mxq_lib_shared PRIVATE Threads::Threads)
if(MXQ_WITH_CUDA)
  target_link_libraries(mxq_lib_static INTERFACE CUDA::cudart)
  target_link_libraries(mxq_lib_shared PRIVATE CUDA::cudart)
endif()

install(TARGETS mxq_lib_static mxq_lib_shared EXPORT mxqTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT mxq_dev
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT mxq_runtime
                NAMELINK_COMPONENT mxq_dev)
install(TARGETS mxq RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT mxq_cli)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/mxq DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        COMPONENT mxq_dev FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/include/mxq/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mxq COMPONENT mxq_dev)

set(_mxq_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/mxq)
install(EXPORT mxqTargets NAMESPACE mxq:: DESTINATION ${_mxq_cmake_dir} COMPONENT mxq_dev)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mxqConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/mxqConfig.cmake INSTALL_DESTINATION ${_mxq_cmake_dir})
# 0.x: a minor version may change the API, so only the same minor version is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/mxqConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/mxqConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/mxqConfigVersion.cmake
        DESTINATION ${_mxq_cmake_dir} COMPONENT mxq_dev)
