// The `endless` command-line tool: one binary, one subcommand per job (see tools/cmd_*.cpp).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>

#include "cli.h"
#include "util/error.h"

namespace endless::cli {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
}  // namespace endless::cli

int main(int argc, char** argv) {
  using namespace endless;
  CLI::App app{"endless: run language models over endless streams, in bounded memory"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "endless 0.1.0");

  auto& commands = cli::registry();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> actions;
  for (const auto& cmd : commands) {
    CLI::App* sub = app.add_subcommand(cmd.name, cmd.help);
    actions.emplace_back(sub, cmd.setup(*sub));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const Error& e) {
    std::fflush(stdout);
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
