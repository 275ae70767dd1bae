// pmprof-serve: the executable behind `pmprof serve`, which execs it (src/cli/main.cpp says why).
// It offers that one subcommand, with the same global options and exit codes as pmprof.
#include "cli/command.h"

int main(int argc, char** argv) {
    static constexpr pmprof::Command kCommands[] = {{"serve", pmprof::add_serve_command}};
    return pmprof::cli_main(argc, argv, kCommands);
}
