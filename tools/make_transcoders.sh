#!/bin/sh
# Regenerates the default model's transcoder set (examples/models/default/transcoders): makes
# the model's corpus if it is missing, then trains one skip transcoder per layer and writes the
# set, its metrics and train_log.json (see tools/train_transcoders.lua). Run from the
# repository root after building (cmake --build build). About 15 minutes on 2 shared CPU cores.
set -eu
corpus=out/default-model/corpus.txt
if [ ! -f "$corpus" ]; then
    mkdir -p out/default-model
    python3 tools/make_corpus.py --seed 1234 --size 4000000 "$corpus"
fi
exec build/kernel/loupe run tools/train_transcoders.lua
