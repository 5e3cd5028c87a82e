#!/bin/bash
# The PKCS#11 core used directly (tcore.c) against a private copy of the fixture token.
source "$P11M_SRCDIR/tests/fixtures/lib.sh"
fx_workdir core
fx_token || bail_out "token fixture could not be built"
(umask 077 && echo 0000 >bad-pin.txt)
exec "$P11M_BUILDDIR/tests/core/tcore" "file:$FX_PIN_FILE" "file:$WORK/bad-pin.txt"
