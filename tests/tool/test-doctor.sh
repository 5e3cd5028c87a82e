#!/bin/bash
source "$(dirname "$0")/common.sh"
skip_all "not written yet"
