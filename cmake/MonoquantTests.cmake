# The C tests (tests/c). Included by the top-level CMakeLists.txt when MONOQUANT_BUILD_TESTS is on.
find_package(Threads REQUIRED)
set(MQ_TEST_DIR "${PROJECT_SOURCE_DIR}/tests/c")

function(mq_c_test name)
  add_executable(${name} ${ARGN})
  # capi/ holds monoquant_debug.h, the library's test hooks (not installed, not published)
  target_include_directories(${name} PRIVATE "${MQ_TEST_DIR}" "${PROJECT_SOURCE_DIR}/capi")
  target_link_libraries(${name} PRIVATE monoquant::monoquant Threads::Threads m)
  target_compile_options(${name} PRIVATE ${MQ_WARNINGS})
  set_target_properties(${name} PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS ON)
  add_dependencies(${name} monoquant_go)
  add_test(NAME ${name} COMMAND ${name})
  # the runs the tests record go to the build tree, never the user's run log (docs/RUNLOG.md)
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "MONOQUANT_HOME=${CMAKE_BINARY_DIR}/test-home")
endfunction()

mq_c_test(test_api "${MQ_TEST_DIR}/test_api.c")
mq_c_test(test_threads "${MQ_TEST_DIR}/test_threads.c")
mq_c_test(test_observer "${MQ_TEST_DIR}/test_observer.c")
mq_c_test(test_model "${MQ_TEST_DIR}/test_model.c")
# test_model reads the bundled example and malicious fixtures from the source tree.
target_compile_definitions(test_model PRIVATE MQ_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
mq_c_test(test_search "${MQ_TEST_DIR}/test_search.c")
target_compile_definitions(test_search PRIVATE MQ_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
mq_c_test(test_runlog "${MQ_TEST_DIR}/test_runlog.c")
target_compile_definitions(test_runlog PRIVATE MQ_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
mq_c_test(test_sensitivity "${MQ_TEST_DIR}/test_sensitivity.c")
target_compile_definitions(test_sensitivity PRIVATE MQ_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

# The header on its own, as strict C99 and as C++11; linking proves the extern "C" guards.
add_executable(header_c99 "${MQ_TEST_DIR}/header_c99.c")
target_link_libraries(header_c99 PRIVATE monoquant::monoquant)
target_compile_options(header_c99 PRIVATE ${MQ_WARNINGS} -pedantic)
set_target_properties(header_c99 PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
add_dependencies(header_c99 monoquant_go)
add_test(NAME header_c99 COMMAND header_c99)
add_executable(header_cxx "${MQ_TEST_DIR}/header_cxx.cpp")
target_link_libraries(header_cxx PRIVATE monoquant::monoquant)
target_compile_options(header_cxx PRIVATE ${MQ_WARNINGS} -pedantic)
set_target_properties(header_cxx PROPERTIES CXX_STANDARD 11 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
add_dependencies(header_cxx monoquant_go)
add_test(NAME header_cxx COMMAND header_cxx)

add_test(NAME symbols COMMAND sh "${MQ_TEST_DIR}/check_symbols.sh" "${MQ_LIB}" "${PROJECT_SOURCE_DIR}/include/monoquant.h" "${PROJECT_SOURCE_DIR}/capi/monoquant_debug.h")
add_test(NAME example COMMAND c-example)
set_tests_properties(example PROPERTIES PASS_REGULAR_EXPRESSION "SQNR: [0-9]")

# Memory checking. valgrind is of little use here: the Go runtime's own threads, signal-based
# preemption and a garbage collector that scans memory it never initialised produce reports that
# are not bugs. Instead both sides are built with AddressSanitizer: the C test programs with
# -fsanitize=address,undefined, and a second copy of the library with `go build -asan`, which
# instruments the Go code's loads and stores too, so an engine write past a caller's buffer is
# caught, not only C's own mistakes. LeakSanitizer (detect_leaks=1) sees every malloc, including
# the library's C.CString error messages. No suppressions are needed today; should a Go runtime
# allocation ever show up, add it to a tests/c/lsan.supp with the reason. asan_canary proves the
# setup works: it overruns a buffer through the ABI and must be stopped.
if(MONOQUANT_SANITIZERS AND CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  find_program(GO_EXECUTABLE go REQUIRED)
  set(MQ_ASAN_LIB "${CMAKE_CURRENT_BINARY_DIR}/asan/libmonoquant.so")
  file(GLOB_RECURSE MQ_GO_SOURCES_ASAN CONFIGURE_DEPENDS
       "${PROJECT_SOURCE_DIR}/core/*.go" "${PROJECT_SOURCE_DIR}/capi/*.go"
       "${PROJECT_SOURCE_DIR}/capi/*.c" "${PROJECT_SOURCE_DIR}/capi/*.h")
  add_custom_command(
    OUTPUT "${MQ_ASAN_LIB}"
    COMMAND ${CMAKE_COMMAND} -E env CGO_ENABLED=1
            ${GO_EXECUTABLE} build -asan -buildmode=c-shared -o "${MQ_ASAN_LIB}" ./capi
    COMMAND ${CMAKE_COMMAND} -E remove "${CMAKE_CURRENT_BINARY_DIR}/asan/libmonoquant.h"
    DEPENDS ${MQ_GO_SOURCES_ASAN} "${PROJECT_SOURCE_DIR}/include/monoquant.h"
    WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
    COMMENT "go build -asan -buildmode=c-shared asan/libmonoquant.so"
    VERBATIM)
  add_custom_target(monoquant_go_asan ALL DEPENDS "${MQ_ASAN_LIB}")
  add_library(monoquant_asan SHARED IMPORTED GLOBAL)
  set_target_properties(monoquant_asan PROPERTIES
    IMPORTED_LOCATION "${MQ_ASAN_LIB}"
    IMPORTED_NO_SONAME TRUE
    INTERFACE_INCLUDE_DIRECTORIES "${PROJECT_SOURCE_DIR}/include")

  set(MQ_ASAN_ENV "ASAN_OPTIONS=detect_leaks=1:halt_on_error=1;UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1;MONOQUANT_HOME=${CMAKE_BINARY_DIR}/test-home")
  foreach(t test_api test_threads test_observer test_model test_search test_runlog test_sensitivity asan_canary)
    set(name ${t}_asan)
    if(t STREQUAL "asan_canary")
      set(name asan_canary)
    endif()
    add_executable(${name} "${MQ_TEST_DIR}/${t}.c")
    # capi/ holds monoquant_debug.h, the library's test hooks (not installed, not published)
  target_include_directories(${name} PRIVATE "${MQ_TEST_DIR}" "${PROJECT_SOURCE_DIR}/capi")
    target_link_libraries(${name} PRIVATE monoquant_asan Threads::Threads m)
    target_compile_options(${name} PRIVATE ${MQ_WARNINGS} -fsanitize=address,undefined -fno-omit-frame-pointer -g)
    target_link_options(${name} PRIVATE -fsanitize=address,undefined)
    set_target_properties(${name} PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS ON)
    add_dependencies(${name} monoquant_go_asan)
    target_compile_definitions(${name} PRIVATE MQ_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES ENVIRONMENT "${MQ_ASAN_ENV}")
  endforeach()
  set_tests_properties(asan_canary PROPERTIES
    PASS_REGULAR_EXPRESSION "heap-buffer-overflow.*core/quant")
endif()

# find_package(monoquant) from a separate project against a fresh install prefix.
add_test(NAME consumer
  COMMAND ${CMAKE_COMMAND}
          -DBUILD_DIR=${CMAKE_BINARY_DIR} -DSOURCE_DIR=${MQ_TEST_DIR}/consumer
          -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer-test
          -DCMAKE_C_COMPILER=${CMAKE_C_COMPILER}
          -P "${PROJECT_SOURCE_DIR}/cmake/RunConsumerTest.cmake")
