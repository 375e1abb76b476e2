#!/bin/sh
# A binary:// logging program for stdio_test. Finds its output directory in the "dir <path>" argument pair,
# records its argv and environment there, copies fd 3 (stdout) and fd 4 (stderr) to files, and reports ready by
# closing fd 5 once the copies run.
set -eu
prev=""
dir=""
for a in "$@"; do
  if [ "$prev" = "dir" ]; then dir="$a"; fi
  prev="$a"
done
printf '%s\n' "$@" > "$dir/args"
env > "$dir/env"
cat <&3 > "$dir/stdout" 5>&- 4<&- &
cat <&4 > "$dir/stderr" 5>&- 3<&- &
exec 3<&- 4<&- 5>&-
wait
