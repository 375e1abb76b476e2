# Shared by unit test directories that need a reaper (include() it; safe to include twice).
# gvshim_reaper_test(NAME SOURCES ... DEPS ...) is gvshim_unit_test with test_main.cc (which makes and starts the
# binary's sys::Reaper, TestReaper(), before any thread) instead of gtest_main. The fakes themselves are header-only.
include_guard(GLOBAL)

add_library(gvshim_test_reaper_main STATIC ${CMAKE_CURRENT_LIST_DIR}/test_main.cc)
target_include_directories(gvshim_test_reaper_main PUBLIC ${CMAKE_SOURCE_DIR})
target_compile_options(gvshim_test_reaper_main PRIVATE ${GVSHIM_WARNINGS})
target_link_libraries(gvshim_test_reaper_main PUBLIC gvshim_sys GTest::gtest GTest::gmock)

function(gvshim_reaper_test name)
  # LOCK: a ctest RESOURCE_LOCK name, for tests that must not run at the same time as others holding it.
  cmake_parse_arguments(T "" "LOCK" "SOURCES;DEPS" ${ARGN})
  set(_props LABELS unit ENVIRONMENT "GVSHIM_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  if(T_LOCK)
    list(APPEND _props RESOURCE_LOCK ${T_LOCK})
  endif()
  add_executable(${name} ${T_SOURCES})
  target_compile_options(${name} PRIVATE ${GVSHIM_WARNINGS})
  target_link_libraries(${name} PRIVATE ${T_DEPS} gvshim_test_reaper_main)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES ${_props})
endfunction()
