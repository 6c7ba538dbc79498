// The `endless` command-line tool: one binary, one subcommand per job.
#include <cstdio>

int main(int argc, char** argv) {
  std::puts("endless");
  return 0;
}
