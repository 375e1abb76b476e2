# Build-time step (cmake -P): writes OUT, a C++ file holding the runner sources as raw string literals.
# Inputs: -DOUT=<file.cc> -DPYTHON=<python_runner.py> -DNODE=<node_runner.js>.
# Each source travels as ONE argv element of `runsc exec` (python3 -c <src> / node -e <src>), and Linux refuses
# a single argument of MAX_ARG_STRLEN (32 pages = 131072 bytes, including the NUL) or more.
set(_max_arg 131072)

function(_embed var file)
  file(READ ${file} _src)
  file(SIZE ${file} _size)
  if(NOT _size LESS ${_max_arg})
    message(FATAL_ERROR "${file} is ${_size} bytes; it must stay under ${_max_arg} (MAX_ARG_STRLEN) because "
                        "the runner is passed as one exec argument")
  endif()
  # Pick a raw-string delimiter that does not occur in the file.
  foreach(_n RANGE 0 1000)
    set(_delim "gvshim${_n}")
    string(FIND "${_src}" ")${_delim}\"" _pos)
    if(_pos EQUAL -1)
      break()
    endif()
  endforeach()
  if(NOT _pos EQUAL -1)
    message(FATAL_ERROR "${file}: found no raw-string delimiter that does not occur in it")
  endif()
  set(${var} "R\"${_delim}(${_src})${_delim}\"" PARENT_SCOPE)
  set(${var}_SIZE ${_size} PARENT_SCOPE)
endfunction()

_embed(_py ${PYTHON})
_embed(_js ${NODE})

set(_out "// Generated at build time by shim/execute/server/embed_runners.cmake from the bundled runners. Do not edit.
#include \"shim/execute/server/runner_sources.h\"

namespace gvshim::execute {
namespace {
constexpr char kPython[] = ${_py};
constexpr char kNode[] = ${_js};
// Each source is passed as one argument to exec; Linux caps one argument at MAX_ARG_STRLEN (131072 bytes incl. NUL).
static_assert(sizeof(kPython) <= ${_max_arg}, \"the Python runner exceeds MAX_ARG_STRLEN\");
static_assert(sizeof(kNode) <= ${_max_arg}, \"the Node runner exceeds MAX_ARG_STRLEN\");
static_assert(sizeof(kPython) == ${_py_SIZE} + 1, \"the Python runner was not embedded byte for byte\");
static_assert(sizeof(kNode) == ${_js_SIZE} + 1, \"the Node runner was not embedded byte for byte\");
}  // namespace

std::string_view PythonRunnerSource() { return std::string_view(kPython, sizeof(kPython) - 1); }
std::string_view NodeRunnerSource() { return std::string_view(kNode, sizeof(kNode) - 1); }

}  // namespace gvshim::execute
")
# Rewrite only on change, so an unrelated rebuild does not recompile it.
if(EXISTS ${OUT})
  file(READ ${OUT} _old)
  if(_old STREQUAL _out)
    return()
  endif()
endif()
file(WRITE ${OUT} "${_out}")
