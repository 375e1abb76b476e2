# execute_frames_fuzz: arbitrary bytes as a runner's stdout through the Execute server's frame splitter and
# decoder (shim/execute/server/runner_frames.cc, compiled in to be instrumented).
add_executable(execute_frames_fuzz ${CMAKE_CURRENT_LIST_DIR}/execute_frames_fuzz.cc
                                   ${CMAKE_SOURCE_DIR}/shim/execute/server/runner_frames.cc)
target_include_directories(execute_frames_fuzz PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_options(execute_frames_fuzz PRIVATE ${GVSHIM_WARNINGS} -fsanitize=fuzzer,address,undefined
                       -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
target_link_options(execute_frames_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(execute_frames_fuzz PRIVATE nlohmann_json::nlohmann_json absl::status absl::statusor
                      absl::strings absl::str_format)
