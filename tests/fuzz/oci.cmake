# oci_spec_fuzz: arbitrary bytes as a container's config.json through parsing, annotations and hardening.
# config_toml_fuzz: arbitrary bytes as gvshim.toml through config::Parse and the [hardening]/[execute] parsers.
# The sources under test are compiled into each target so that they are coverage-instrumented; the libraries
# below them (base, sys, seccomp, toml++) are linked as they are.
set(_gvshim_oci_sources ${CMAKE_SOURCE_DIR}/shim/oci/hardening.cc ${CMAKE_SOURCE_DIR}/shim/oci/annotations.cc
                        ${CMAKE_SOURCE_DIR}/shim/oci/policy_toml.cc ${CMAKE_SOURCE_DIR}/shim/oci/spec_file.cc)
set(_gvshim_fuzz_flags -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)

add_executable(oci_spec_fuzz ${CMAKE_CURRENT_LIST_DIR}/oci_spec_fuzz.cc ${_gvshim_oci_sources})
target_include_directories(oci_spec_fuzz PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_options(oci_spec_fuzz PRIVATE ${GVSHIM_WARNINGS} ${_gvshim_fuzz_flags})
target_link_options(oci_spec_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(oci_spec_fuzz PRIVATE gvshim_base gvshim_sys gvshim_seccomp gvshim_toml
                      nlohmann_json::nlohmann_json absl::status absl::statusor absl::strings)

add_executable(config_toml_fuzz ${CMAKE_CURRENT_LIST_DIR}/config_toml_fuzz.cc ${_gvshim_oci_sources}
                                ${CMAKE_SOURCE_DIR}/shim/config/config.cc
                                ${CMAKE_SOURCE_DIR}/shim/execute/common/config.cc)
target_include_directories(config_toml_fuzz PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_options(config_toml_fuzz PRIVATE ${GVSHIM_WARNINGS} ${_gvshim_fuzz_flags})
target_link_options(config_toml_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(config_toml_fuzz PRIVATE gvshim_base gvshim_sys gvshim_seccomp gvshim_toml
                      nlohmann_json::nlohmann_json absl::status absl::statusor absl::strings absl::str_format)
