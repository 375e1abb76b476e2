# Protobuf code, in two sets:
#  - the shim's (gvshim_protos): containerd's task/event/type protos, our ttrpc envelope and runtime options, and
#    the well-known types they import, all generated for the protobuf *lite* runtime. The shim needs no
#    descriptors or reflection, and the full runtime would cost every pod's shim about a megabyte of code.
#  - the Execute API's (gvshim_grpc_protos): gvshim/execute/v1 with its gRPC stubs, on the full runtime, for the
#    Execute server and the gvshim tool only.
# No binary links both sets (the lite well-known types would clash with the full runtime's).
#
# containerd's protos are taken from Debian's golang-github-containerd-containerd-dev at configure time and
# staged into the build tree: `import weak` becomes `import` (the open-source C++ generator refuses weak
# imports), and the Go-only gogoproto / containerd fieldpath options and their imports are dropped (they change
# nothing on the wire; without them descriptor.proto, which has no lite form, is not needed).
set(GOCODE /usr/share/gocode/src CACHE PATH "Debian gocode source root")
set(PROTO_STAGE ${CMAKE_BINARY_DIR}/proto-stage)
set(PROTO_GEN ${CMAKE_BINARY_DIR}/proto-gen)
set(PROTO_GEN_FULL ${CMAKE_BINARY_DIR}/proto-gen-full)
file(MAKE_DIRECTORY ${PROTO_GEN} ${PROTO_GEN_FULL})
find_path(PROTOBUF_WKT_DIR google/protobuf/any.proto PATHS /usr/include REQUIRED)

# Writes `content` to `dest` only when it differs, so unchanged protos are not rebuilt.
function(_stage_write dest content)
  if(EXISTS ${dest})
    file(READ ${dest} _old)
    if(_old STREQUAL content)
      return()
    endif()
  endif()
  file(WRITE ${dest} "${content}")
endfunction()

# Adds `option optimize_for = LITE_RUNTIME;` after the package line of a proto's text (in `var`).
macro(_make_lite var)
  string(REGEX REPLACE "(\npackage [^;]+;)" "\\1\noption optimize_for = LITE_RUNTIME;" ${var} "${${var}}")
  if(NOT ${var} MATCHES "\noption optimize_for = LITE_RUNTIME;")
    message(FATAL_ERROR "proto staging: no `package` line to put the lite option after")
  endif()
endmacro()

set(CONTAINERD_PROTOS
  github.com/containerd/containerd/runtime/v2/task/shim.proto
  github.com/containerd/containerd/api/types/mount.proto
  github.com/containerd/containerd/api/types/metrics.proto
  github.com/containerd/containerd/api/types/task/task.proto
  github.com/containerd/containerd/api/events/task.proto
  github.com/containerd/containerd/api/services/ttrpc/events/v1/events.proto
  github.com/containerd/cgroups/stats/v1/metrics.proto
)

set(_lite_protos)
foreach(p IN LISTS CONTAINERD_PROTOS)
  if(NOT EXISTS ${GOCODE}/${p})
    message(FATAL_ERROR "missing ${GOCODE}/${p}: install golang-github-containerd-containerd-dev and golang-github-containerd-cgroups-dev")
  endif()
  file(READ ${GOCODE}/${p} _content)
  string(REPLACE "import weak " "import " _content "${_content}")
  string(REGEX REPLACE "import \"gogoproto/gogo.proto\";" "" _content "${_content}")
  string(REGEX REPLACE "import \"github.com/containerd/containerd/protobuf/plugin/fieldpath.proto\";" "" _content "${_content}")
  string(REGEX REPLACE "option \\((gogoproto|containerd\\.plugin)\\.[^;]*;" "" _content "${_content}")
  string(REGEX REPLACE "\\[\\(gogoproto\\.[^]]*\\]" "" _content "${_content}")
  if(_content MATCHES "gogoproto|containerd\\.plugin")
    message(FATAL_ERROR "${p}: a gogoproto/fieldpath option the staging does not know how to drop")
  endif()
  _make_lite(_content)
  _stage_write(${PROTO_STAGE}/${p} "${_content}")
  list(APPEND _lite_protos ${p})
endforeach()

# The well-known types the shim's protos import, as lite copies.
foreach(p google/protobuf/any.proto google/protobuf/empty.proto google/protobuf/timestamp.proto)
  file(READ ${PROTOBUF_WKT_DIR}/${p} _content)
  _make_lite(_content)
  _stage_write(${PROTO_STAGE}/${p} "${_content}")
  list(APPEND _lite_protos ${p})
endforeach()

# Our own protos: everything but the Execute API and the CRI subset is the shim's.
file(GLOB_RECURSE _own RELATIVE ${CMAKE_SOURCE_DIR}/proto ${CMAKE_SOURCE_DIR}/proto/*.proto)
set(_full_protos)
foreach(p IN LISTS _own)
  if(p MATCHES "^cri/")
    continue()  # the CRI client subset: gvshim_cri_protos below
  endif()
  file(READ ${CMAKE_SOURCE_DIR}/proto/${p} _content)
  if(p MATCHES "^gvshim/execute/")
    _stage_write(${PROTO_STAGE}/full/${p} "${_content}")
    list(APPEND _full_protos ${p})
  else()
    _make_lite(_content)
    _stage_write(${PROTO_STAGE}/${p} "${_content}")
    list(APPEND _lite_protos ${p})
  endif()
endforeach()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/proto)

set(_srcs)
foreach(p IN LISTS _lite_protos)
  string(REGEX REPLACE "\\.proto$" "" base ${p})
  # Only the staged tree is on the path: the lite well-known types are found there, never the system's.
  add_custom_command(OUTPUT ${PROTO_GEN}/${base}.pb.cc ${PROTO_GEN}/${base}.pb.h
    COMMAND ${PROTOC} --proto_path=${PROTO_STAGE} --cpp_out=${PROTO_GEN} ${PROTO_STAGE}/${p}
    DEPENDS ${PROTO_STAGE}/${p}
    COMMENT "protoc (lite) ${p}" VERBATIM)
  list(APPEND _srcs ${PROTO_GEN}/${base}.pb.cc)
endforeach()

set(_full_srcs)
foreach(p IN LISTS _full_protos)
  string(REGEX REPLACE "\\.proto$" "" base ${p})
  set(outs ${PROTO_GEN_FULL}/${base}.pb.cc ${PROTO_GEN_FULL}/${base}.pb.h
           ${PROTO_GEN_FULL}/${base}.grpc.pb.cc ${PROTO_GEN_FULL}/${base}.grpc.pb.h)
  add_custom_command(OUTPUT ${outs}
    COMMAND ${PROTOC} --proto_path=${PROTO_STAGE}/full --proto_path=${PROTOBUF_WKT_DIR} --cpp_out=${PROTO_GEN_FULL}
            --grpc_out=${PROTO_GEN_FULL} --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN} ${PROTO_STAGE}/full/${p}
    DEPENDS ${PROTO_STAGE}/full/${p}
    COMMENT "protoc (full + gRPC) ${p}" VERBATIM)
  list(APPEND _full_srcs ${PROTO_GEN_FULL}/${base}.pb.cc ${PROTO_GEN_FULL}/${base}.grpc.pb.cc)
endforeach()

add_library(gvshim_protos STATIC ${_srcs})
# BEFORE: the generated google/protobuf/*.pb.h (lite) must win over the system's headers of the same name.
target_include_directories(gvshim_protos SYSTEM BEFORE PUBLIC ${PROTO_GEN})
target_link_libraries(gvshim_protos PUBLIC gvshim_protobuf_lite)
target_compile_options(gvshim_protos PRIVATE -w)

add_library(gvshim_grpc_protos STATIC ${_full_srcs})
target_include_directories(gvshim_grpc_protos SYSTEM PUBLIC ${PROTO_GEN_FULL})
target_link_libraries(gvshim_grpc_protos PUBLIC gvshim_protobuf gvshim_grpcpp)
target_compile_options(gvshim_grpc_protos PRIVATE -w)

# The CRI v1 subset (proto/cri/runtime/v1/api.proto, package runtime.v1) with gRPC client stubs, on the full
# runtime, for C++ CRI clients (e.g. a canary pod started through containerd's CRI). Built only when a target links
# it; tests/cri generates its Python stubs from the same file at test time.
set(_cri_base cri/runtime/v1/api)
set(_cri_outs ${PROTO_GEN_FULL}/${_cri_base}.pb.cc ${PROTO_GEN_FULL}/${_cri_base}.pb.h
              ${PROTO_GEN_FULL}/${_cri_base}.grpc.pb.cc ${PROTO_GEN_FULL}/${_cri_base}.grpc.pb.h)
add_custom_command(OUTPUT ${_cri_outs}
  COMMAND ${PROTOC} --proto_path=${CMAKE_SOURCE_DIR}/proto --cpp_out=${PROTO_GEN_FULL}
          --grpc_out=${PROTO_GEN_FULL} --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN}
          ${CMAKE_SOURCE_DIR}/proto/${_cri_base}.proto
  DEPENDS ${CMAKE_SOURCE_DIR}/proto/${_cri_base}.proto
  COMMENT "protoc (full + gRPC) ${_cri_base}.proto" VERBATIM)
add_library(gvshim_cri_protos STATIC EXCLUDE_FROM_ALL
  ${PROTO_GEN_FULL}/${_cri_base}.pb.cc ${PROTO_GEN_FULL}/${_cri_base}.grpc.pb.cc)
target_include_directories(gvshim_cri_protos SYSTEM PUBLIC ${PROTO_GEN_FULL})
target_link_libraries(gvshim_cri_protos PUBLIC gvshim_protobuf gvshim_grpcpp)
target_compile_options(gvshim_cri_protos PRIVATE -w)
