#include "tool.h"
int pemuri_main(int argc, char **argv)
{
    (void) argc;
    (void) argv;
    return 1;
}
