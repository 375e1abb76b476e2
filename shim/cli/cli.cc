#include "shim/cli/cli.h"

#include <ostream>
#include <string>

namespace gvshim::cli {

void UseCommonSettings(CLI::App& app) {
  // The hand-written parsers this replaces let a later occurrence of an option win; scripts may rely on it
  // (a default set early in an argument list, overridden after it).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

CLI::App* AddCommand(CLI::App& parent, const std::string& name, const std::string& description) {
  CLI::App* cmd = parent.add_subcommand(name, description);
  UseCommonSettings(*cmd);
  return cmd;
}

CLI::Option* AddUnsigned(CLI::App& app, const std::string& name, uint64_t& out, const std::string& help,
                         uint64_t min) {
  // Checked before CLI11 converts the text: CLI11 2.1 would make "-1" 2^64-1, and "" (from `--name=`) 0.
  // What is not a number at all is left to the conversion ("Could not convert: --name = abc").
  CLI::Validator at_least(
      [min](std::string& v) -> std::string {
        const std::string want = "wants a whole number of at least " + std::to_string(min) + ", got ";
        if (v.empty()) return want + "nothing";
        if (v[0] == '-') return want + v;
        uint64_t n = 0;
        if (min > 0 && CLI::detail::lexical_cast(v, n) && n < min) return want + v;
        return "";
      },
      "", "AtLeast");
  return app.add_option(name, out, help)->check(at_least);
}

CLI::Option* AddRepeated(CLI::App& app, const std::string& name, std::vector<std::string>& out,
                         const std::string& help) {
  return app.add_option(name, out, help)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
}

CLI::Validator KeyValue() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        auto eq = v.find('=');
        if (eq == std::string::npos || eq == 0) return "wants KEY=VALUE, got " + v;
        return "";
      },
      "", "KeyValue");
}

void RequireOneSubcommand(CLI::App& cmd) {
  // At most one here (a later word naming a subcommand is an argument of the first); "at least one" is
  // checked by the callback, which CLI11 runs after it has reported unexpected words.
  cmd.require_subcommand(0, 1);
  CLI::App* self = &cmd;
  cmd.callback([self] {
    if (!self->get_subcommands().empty()) return;
    std::string names;
    for (const CLI::App* sub : self->get_subcommands([](CLI::App* s) { return !s->get_group().empty(); })) {
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    throw CLI::RequiredError("a command (" + names + ")");
  });
}

std::string CommandPath(const CLI::App& app) {
  std::string path = app.get_name();
  const CLI::App* at = &app;
  while (!at->get_subcommands().empty()) {
    at = at->get_subcommands().front();
    path += " " + at->get_name();
  }
  return path;
}

namespace {

// Whether a command of the tree under `app` has the long option `name` taking a value, or as a flag.
void FindLongOption(CLI::App& app, const std::string& name, bool& takes_value, bool& is_flag) {
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->check_lname(name)) (opt->get_items_expected_min() > 0 ? takes_value : is_flag) = true;
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    FindLongOption(*sub, name, takes_value, is_flag);
  }
}

// "--name=" -> "--name", "" for an option that takes a value (before any "--": after it every word is an
// argument).
std::vector<std::string> SplitEmptyValues(CLI::App& app, const std::vector<std::string>& args) {
  std::vector<std::string> out;
  bool arguments_only = false;
  for (const std::string& a : args) {
    arguments_only = arguments_only || a == "--";
    if (!arguments_only && a.size() > 3 && a.rfind("--", 0) == 0 && a.find('=') == a.size() - 1) {
      const std::string option = a.substr(0, a.size() - 1);
      bool takes_value = false, is_flag = false;
      FindLongOption(app, option.substr(2), takes_value, is_flag);
      if (takes_value && !is_flag) {
        out.push_back(option);
        out.emplace_back();
        continue;
      }
    }
    out.push_back(a);
  }
  return out;
}

}  // namespace

std::optional<int> Parse(CLI::App& app, const std::vector<std::string>& args, std::ostream& out,
                         std::ostream& err) {
  const std::vector<std::string> split = SplitEmptyValues(app, args);
  std::vector<std::string> reversed(split.rbegin(), split.rend());  // CLI11 consumes from the back
  try {
    app.parse(reversed);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    // --help, --help-all, --version: CLI11 prints them (the help of the deepest selected command).
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e, out, err);
    const std::string path = CommandPath(app);
    err << path << ": " << e.what() << "\nRun '" << path << " --help' for more information.\n" << std::flush;
    return kUsageExitCode;
  }
}

}  // namespace gvshim::cli
