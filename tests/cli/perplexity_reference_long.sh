#!/usr/bin/env bash
# The long-context lines of reference/llamacpp-perplexity.txt (-c 2048 and 4096).
. "$(dirname "$0")/lib.sh"
require_shared reference/llamacpp-perplexity.txt
exec bash "$(dirname "$0")/perplexity_reference.sh" 1025 1000000
