#include "tool.h"
int csr_main(int argc, char **argv)
{
    (void) argc;
    (void) argv;
    return 1;
}
