#include "tool.h"
int ca_main(int argc, char **argv)
{
    (void) argc;
    (void) argv;
    return 1;
}
