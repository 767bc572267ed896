# ctest's "consumer" test: install the build into a temporary prefix, then build and run
# tests/c/consumer with find_package(monoquant), and compile it once more with pkg-config's flags.
# Inputs: BUILD_DIR, SOURCE_DIR, WORK_DIR, CMAKE_C_COMPILER.
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f lib/libmonoquant.so include/monoquant.h lib/cmake/monoquant/monoquantConfig.cmake
          lib/cmake/monoquant/monoquantConfigVersion.cmake lib/pkgconfig/monoquant.pc)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()

run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_C_COMPILER=${CMAKE_C_COMPILER})
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/consumer")
message(STATUS "find_package consumer: ${last_output}")

find_program(PKG_CONFIG pkg-config)
if(PKG_CONFIG)
  set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig")
  run(${PKG_CONFIG} --cflags --libs monoquant)
  separate_arguments(flags UNIX_COMMAND "${last_output}")
  run(${CMAKE_C_COMPILER} "${SOURCE_DIR}/main.c" ${flags} -o "${WORK_DIR}/consumer-pc")
  run("${WORK_DIR}/consumer-pc")
  message(STATUS "pkg-config consumer: ${last_output}")
else()
  message(STATUS "pkg-config not installed: monoquant.pc was installed but not exercised")
endif()
