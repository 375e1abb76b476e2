# libFuzzer target for the ttrpc frame parser and envelope decoding (shim/ttrpc). Built only with
# -DGVSHIM_FUZZ=ON and clang. The library itself is instrumented too (coverage + ASan/UBSan), otherwise the
# fuzzer would see no coverage inside the code it targets; consumers of gvshim_ttrpc in a fuzz build therefore
# link the sanitizer runtimes.
target_compile_options(gvshim_ttrpc PRIVATE -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
target_link_options(gvshim_ttrpc INTERFACE -fsanitize=address,undefined)

add_executable(ttrpc_frame_fuzz ${CMAKE_CURRENT_LIST_DIR}/ttrpc_frame_fuzz.cc)
target_compile_options(ttrpc_frame_fuzz PRIVATE ${GVSHIM_WARNINGS} -fsanitize=fuzzer,address,undefined
                                                -fno-omit-frame-pointer)
target_link_options(ttrpc_frame_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(ttrpc_frame_fuzz PRIVATE gvshim_ttrpc)
