// The command line of the `gvshim` tool is parsed by CLI11. Every command (shim/main/gvshim_cli.cc and the
// subcommands declared by shim/main/exec_client, shim/node/node_main and shim/gateway/gateway_main) uses
// these helpers, so that all of them behave alike:
//   - `--flag value` and `--flag=value` both work; an option given twice keeps its last value;
//   - a repeatable option (`--env A=1 --env B=2`) takes one value per occurrence;
//   - unsigned numbers reject a minus sign (CLI11 2.1 would wrap "-1" around to 2^64-1);
//   - `--name=` is an empty value;
//   - `--help`/`-h` prints the command's help to stdout and exits 0; a usage error (unknown flag, missing
//   value,
//     a value that does not convert, a missing command) prints "<command path>: <what>" to stderr and
//     exits 2.
// The containerd shim binary (containerd-shim-gvisor-v1) does not use this: its flags are Go-style
// (shim/main/flags.h), as containerd passes them.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace gvshim::cli {

// The exit code of a usage error, as before CLI11.
inline constexpr int kUsageExitCode = 2;

// Applies the shared settings to `app` (a command or subcommand). Call it before declaring options.
void UseCommonSettings(CLI::App& app);

// Adds a subcommand of `parent` with the shared settings applied.
CLI::App* AddCommand(CLI::App& parent, const std::string& name, const std::string& description);

// An option taking a whole number of at least `min`.
CLI::Option* AddUnsigned(CLI::App& app, const std::string& name, uint64_t& out, const std::string& help,
                         uint64_t min = 0);

// An option that may be given several times, each time with one value, collected in order. It never takes the
// word after its value (CLI11's vector options would, unless told not to).
CLI::Option* AddRepeated(CLI::App& app, const std::string& name, std::vector<std::string>& out,
                         const std::string& help);

// A validator for KEY=VALUE (a non-empty key before the first '=').
CLI::Validator KeyValue();

// Makes `cmd` need exactly one of its subcommands (call it once they are declared). Unlike CLI11's
// require_subcommand(1), a word that names no subcommand is reported by name ("not expected: reinstall").
void RequireOneSubcommand(CLI::App& cmd);

// Parses `args` (the command line without the program name) into `app`. nullopt: parsed, run the selected
// command. Otherwise the process exit code, having printed help or version (to `out`, 0) or the usage error
// (to `err`, kUsageExitCode). `--name=` with nothing after the '=' is an empty value, as it was before CLI11
// (`--shim-link-dir=`: no link); CLI11 2.1 alone would take the next word as the value.
std::optional<int> Parse(CLI::App& app, const std::vector<std::string>& args, std::ostream& out,
                         std::ostream& err);

// "gvshim node canary": the names of `app` and of the deepest subcommand selected under it.
std::string CommandPath(const CLI::App& app);

}  // namespace gvshim::cli
