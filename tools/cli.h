// How subcommands plug into the `endless` tool: each tools/cmd_*.cpp registers itself with a
// static Registration; main() builds the CLI11 app from the registry. No central list to edit.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace endless::cli {

// Adds the subcommand's options to `sub` and returns the action to run once parsing succeeded.
// The action returns the process exit code.
using Setup = std::function<std::function<int()>(CLI::App& sub)>;

struct Command {
  std::string name;
  std::string help;
  Setup setup;
};

std::vector<Command>& registry();

struct Registration {
  Registration(std::string name, std::string help, Setup setup) {
    registry().push_back({std::move(name), std::move(help), std::move(setup)});
  }
};

// Validators shared by subcommands.
inline const CLI::Validator& existing_file() { return CLI::ExistingFile; }

}  // namespace endless::cli
