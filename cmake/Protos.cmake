# containerd's protos are taken from Debian's golang-github-containerd-containerd-dev at configure time.
# The C++ generator of the open-source protoc refuses `import weak`, so each file is staged into the build
# tree with `import weak` rewritten to `import`; gogo.proto comes from golang-github-gogo-protobuf-dev.
set(GOCODE /usr/share/gocode/src CACHE PATH "Debian gocode source root")
set(PROTO_STAGE ${CMAKE_BINARY_DIR}/proto-stage)
set(PROTO_GEN ${CMAKE_BINARY_DIR}/proto-gen)
file(MAKE_DIRECTORY ${PROTO_GEN})

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

set(CONTAINERD_PROTOS
  github.com/containerd/containerd/runtime/v2/task/shim.proto
  github.com/containerd/containerd/api/types/mount.proto
  github.com/containerd/containerd/api/types/metrics.proto
  github.com/containerd/containerd/api/types/task/task.proto
  github.com/containerd/containerd/api/events/task.proto
  github.com/containerd/containerd/api/services/ttrpc/events/v1/events.proto
  github.com/containerd/containerd/protobuf/plugin/fieldpath.proto
  github.com/containerd/cgroups/stats/v1/metrics.proto
)

set(_all_protos)
foreach(p IN LISTS CONTAINERD_PROTOS)
  if(NOT EXISTS ${GOCODE}/${p})
    message(FATAL_ERROR "missing ${GOCODE}/${p}: install golang-github-containerd-containerd-dev and golang-github-containerd-cgroups-dev")
  endif()
  file(READ ${GOCODE}/${p} _content)
  string(REPLACE "import weak " "import " _content "${_content}")
  _stage_write(${PROTO_STAGE}/${p} "${_content}")
  list(APPEND _all_protos ${p})
endforeach()
set(_gogo ${GOCODE}/github.com/gogo/protobuf/gogoproto/gogo.proto)
if(NOT EXISTS ${_gogo})
  message(FATAL_ERROR "missing ${_gogo}: install golang-github-gogo-protobuf-dev")
endif()
file(READ ${_gogo} _content)
_stage_write(${PROTO_STAGE}/gogoproto/gogo.proto "${_content}")
list(APPEND _all_protos gogoproto/gogo.proto)

# Our own protos.
file(GLOB_RECURSE _own RELATIVE ${CMAKE_SOURCE_DIR}/proto ${CMAKE_SOURCE_DIR}/proto/*.proto)
foreach(p IN LISTS _own)
  file(READ ${CMAKE_SOURCE_DIR}/proto/${p} _content)
  _stage_write(${PROTO_STAGE}/${p} "${_content}")
  list(APPEND _all_protos ${p})
endforeach()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/proto)

set(_srcs)
set(_grpc_srcs)
foreach(p IN LISTS _all_protos)
  string(REGEX REPLACE "\\.proto$" "" base ${p})
  set(outs ${PROTO_GEN}/${base}.pb.cc ${PROTO_GEN}/${base}.pb.h)
  set(args --proto_path=${PROTO_STAGE} --proto_path=/usr/include --cpp_out=${PROTO_GEN})
  file(READ ${PROTO_STAGE}/${p} _c)
  set(_has_service FALSE)
  if(p MATCHES "^gvshim/" AND _c MATCHES "\nservice ")
    set(_has_service TRUE)
    list(APPEND outs ${PROTO_GEN}/${base}.grpc.pb.cc ${PROTO_GEN}/${base}.grpc.pb.h)
    list(APPEND args --grpc_out=${PROTO_GEN} --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN})
  endif()
  add_custom_command(OUTPUT ${outs}
    COMMAND ${PROTOC} ${args} ${PROTO_STAGE}/${p}
    DEPENDS ${PROTO_STAGE}/${p}
    COMMENT "protoc ${p}" VERBATIM)
  list(APPEND _srcs ${PROTO_GEN}/${base}.pb.cc)
  if(_has_service)
    list(APPEND _grpc_srcs ${PROTO_GEN}/${base}.grpc.pb.cc)
  endif()
endforeach()

add_library(gvshim_protos STATIC ${_srcs})
target_include_directories(gvshim_protos SYSTEM PUBLIC ${PROTO_GEN})
target_link_libraries(gvshim_protos PUBLIC gvshim_protobuf)
target_compile_options(gvshim_protos PRIVATE -w)

if(_grpc_srcs)
  add_library(gvshim_grpc_protos STATIC ${_grpc_srcs})
  target_link_libraries(gvshim_grpc_protos PUBLIC gvshim_protos gvshim_grpcpp)
  target_compile_options(gvshim_grpc_protos PRIVATE -w)
endif()
