#include "tool.h"
int run_main(int argc, char **argv)
{
    (void) argc;
    (void) argv;
    return 1;
}
