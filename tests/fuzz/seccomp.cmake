# seccomp_profile_fuzz: arbitrary bytes as a seccomp profile. The validator's source is compiled into the target
# so that it is coverage-instrumented; libseccomp and the base libraries are linked as they are.
add_executable(seccomp_profile_fuzz ${CMAKE_CURRENT_SOURCE_DIR}/seccomp_profile_fuzz.cc
                                    ${CMAKE_SOURCE_DIR}/shim/seccomp/profile.cc
                                    ${CMAKE_SOURCE_DIR}/shim/seccomp/checker.cc)
target_include_directories(seccomp_profile_fuzz PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_options(seccomp_profile_fuzz PRIVATE ${GVSHIM_WARNINGS} -fsanitize=fuzzer,address,undefined
                       -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
target_link_options(seccomp_profile_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(seccomp_profile_fuzz PRIVATE gvshim_base gvshim_sys nlohmann_json::nlohmann_json
                      gvshim_seccomp_lib)
