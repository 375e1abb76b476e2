# hardening_bench: Harden() of a typical CRI container spec and LoadProfileFile(strict.json), against the
# baseline of copying the spec's JSON.
add_executable(hardening_bench ${CMAKE_CURRENT_SOURCE_DIR}/hardening_bench.cc)
target_compile_options(hardening_bench PRIVATE ${GVSHIM_WARNINGS})
target_compile_definitions(hardening_bench PRIVATE GVSHIM_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
target_link_libraries(hardening_bench PRIVATE gvshim_oci gvshim_seccomp benchmark::benchmark benchmark::benchmark_main)
