/*
 * fuzz.h - shared by the libFuzzer targets of tests/fuzz (built by run.sh with clang,
 * -fsanitize=fuzzer,address,undefined).
 */
#ifndef P11M_FUZZ_H
#define P11M_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A property the code under test must keep: violating it is a finding, like a crash. */
#define FUZZ_ASSERT(cond, ...)                                                           \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz property violated: %s: ", #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* The input as a NUL-terminated string (cut at the first NUL); free() it. */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
