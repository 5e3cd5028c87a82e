#!/bin/bash
# Session copies of private keys (tkeycache.c) against a private copy of the fixture
# token; the token directory is moved away and back to simulate removal.
source "$P11M_SRCDIR/tests/fixtures/lib.sh"
fx_workdir core-keycache
fx_token || bail_out "token fixture could not be built"
exec "$P11M_BUILDDIR/tests/core/tkeycache" "file:$FX_PIN_FILE" "$WORK/token" "$WORK/core.log"
