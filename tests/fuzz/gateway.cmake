# gateway_run_fuzz: arbitrary bytes as the gateway's POST /run (Content-Type line + body) through the request
# validation and strict base64 (shim/gateway/run_request.cc, strict_base64.cc, compiled in to be instrumented).
add_executable(gateway_run_fuzz ${CMAKE_CURRENT_LIST_DIR}/gateway_run_fuzz.cc
                                ${CMAKE_SOURCE_DIR}/shim/gateway/run_request.cc
                                ${CMAKE_SOURCE_DIR}/shim/gateway/strict_base64.cc)
target_include_directories(gateway_run_fuzz PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_options(gateway_run_fuzz PRIVATE ${GVSHIM_WARNINGS} -fsanitize=fuzzer,address,undefined
                       -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
target_link_options(gateway_run_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(gateway_run_fuzz PRIVATE nlohmann_json::nlohmann_json absl::status absl::statusor
                      absl::strings)
