#!/bin/sh
# Regenerates loupe's default model (examples/models/default) from scratch, on the CPU:
# the corpus (tools/make_corpus.py, seed 1234, 4 MB; written to out/, which git ignores),
# then the tokenizer and the model (tools/train_default.lua). About 15 minutes on 2 cores.
# Usage: sh tools/make_default_model.sh   (from the repository root, after the build)
set -eu
cd "$(dirname "$0")/.."
mkdir -p out/default-model
python3 tools/make_corpus.py --seed 1234 --size 4000000 out/default-model/corpus.txt
LOUPE_CORPUS=out/default-model/corpus.txt LOUPE_OUT=examples/models/default \
    build/kernel/loupe run tools/train_default.lua
