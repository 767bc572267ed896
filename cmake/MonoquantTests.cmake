# The C tests (tests/c). Included by the top-level CMakeLists.txt when MONOQUANT_BUILD_TESTS is on.
find_package(Threads REQUIRED)
set(MQ_TEST_DIR "${PROJECT_SOURCE_DIR}/tests/c")

function(mq_c_test name)
  add_executable(${name} ${ARGN})
  target_include_directories(${name} PRIVATE "${MQ_TEST_DIR}")
  target_link_libraries(${name} PRIVATE monoquant::monoquant Threads::Threads m)
  target_compile_options(${name} PRIVATE ${MQ_WARNINGS})
  set_target_properties(${name} PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS ON)
  add_dependencies(${name} monoquant_go)
  add_test(NAME ${name} COMMAND ${name})
endfunction()

mq_c_test(test_api "${MQ_TEST_DIR}/test_api.c")
mq_c_test(test_threads "${MQ_TEST_DIR}/test_threads.c")
mq_c_test(test_observer "${MQ_TEST_DIR}/test_observer.c")

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

add_test(NAME symbols COMMAND sh "${MQ_TEST_DIR}/check_symbols.sh" "${MQ_LIB}" "${PROJECT_SOURCE_DIR}/include/monoquant.h")
add_test(NAME example COMMAND c-example)
set_tests_properties(example PROPERTIES PASS_REGULAR_EXPRESSION "SQNR: [0-9]")

# Memory checking. valgrind is of little use here: the Go runtime's own threads, signal-based
# preemption and a garbage collector that scans memory it never initialised produce reports that
# are not bugs. What can be wrong on our side of the ABI is C memory: reads or writes past caller
# buffers, leaks of library-allocated C strings (C.CString in capi), use of freed memory. So the C
# test programs are instrumented with AddressSanitizer + UBSan (the Go code is not; ASan checks
# every C buffer access, and LeakSanitizer, on by detect_leaks=1, sees every malloc including the
# library's C side). No suppressions are needed today; add them to tests/c/lsan.supp with a reason
# if a Go runtime allocation ever shows up.
if(MONOQUANT_SANITIZERS AND CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  foreach(t test_api test_threads test_observer)
    mq_c_test(${t}_asan "${MQ_TEST_DIR}/${t}.c")
    target_compile_options(${t}_asan PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer -g)
    target_link_options(${t}_asan PRIVATE -fsanitize=address,undefined)
    set_tests_properties(${t}_asan PROPERTIES
      ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1;UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
  endforeach()
endif()

# find_package(monoquant) from a separate project against a fresh install prefix.
add_test(NAME consumer
  COMMAND ${CMAKE_COMMAND}
          -DBUILD_DIR=${CMAKE_BINARY_DIR} -DSOURCE_DIR=${MQ_TEST_DIR}/consumer
          -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer-test
          -DCMAKE_C_COMPILER=${CMAKE_C_COMPILER}
          -P "${PROJECT_SOURCE_DIR}/cmake/RunConsumerTest.cmake")
