#!/usr/bin/env bash
# The issue-14 figures, each a ratio of this checkout (A) against a baseline checkout (B),
# the two run in turn (A B A B ...) by farm-bench, so a change in the machine's speed hits
# both alike:
#
#   git worktree add --detach /tmp/sn-dd36bd7 dd36bd7       # once: the baseline
#   bench/versus.sh /tmp/sn-dd36bd7                          # ~10-15 minutes on 2 cores
#   RUNS=5 bench/versus.sh /tmp/sn-dd36bd7 clip features    # only some figures
#
# Figures: detect (1 h, default runtime), features (read + features of 1 h, fresh process;
# bench/_stages.py also prints the in-process features stage), clip (detect a 10 s clip in
# a fresh process), extract (--jobs 1 over 32 x 240 s: one core). Both sides run the same
# model folder (a copy of this checkout's bundled model) and PYTHONPATH picks the code;
# the commands run from $CACHE, never from a checkout (python -m puts the working folder
# first on sys.path). Outputs of the two sides are compared after each figure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
base=$(cd "${1:?usage: bench/versus.sh BASELINE_CHECKOUT [figure ...]}" && pwd)
shift
figures=${*:-detect features clip extract}
python=${PYTHON:-$(command -v python)}
cache=${SOUNDNET_BENCH_CACHE:-/tmp/soundnet-bench}
runs=${RUNS:-3}
mkdir -p "$cache/versus"
cd "$cache"
rm -rf "$cache/versus/model" && cp -r "$here/soundnet/models/default" "$cache/versus/model"
model=$cache/versus/model

PYTHONPATH=$here "$python" - <<PY
import sys
sys.path.insert(0, "$here/bench")
from _common import CACHE, long_wav
from extract_throughput import make_set
long_wav(3600.0)
long_wav(10.0, path=CACHE / "clip-10s.wav")
make_set(32, 240.0)
PY

side() {  # side CHECKOUT ARGS...: a command line running ARGS with CHECKOUT's code
    local tree=$1
    shift
    echo "env PYTHONPATH=$tree $*"
}

pair() {  # pair NAME RUNS TIMEOUT ARGS... (ARGS: with @TREE@ and @OUT@ for each side's code and output)
    local name=$1 n=$2 timeout=$3
    shift 3
    local a b
    a=$(side "$here" "${*//@OUT@/$cache/versus/$name-A}")
    a=${a//@TREE@/$here}
    b=$(side "$base" "${*//@OUT@/$cache/versus/$name-B}")
    b=${b//@TREE@/$base}
    echo "== $name ($(date -u +%H:%M) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"
    eval "farm-bench -n $n --timeout $timeout --vs \"\$b\" -- $a" | tee "$cache/versus/$name.txt"
}

for figure in $figures; do
    case $figure in
        detect)
            pair detect "$runs" 900 "$python" -m soundnet detect "$cache/long-3600s.wav" --model "$model" --format tsv -o @OUT@.tsv
            cmp "$cache/versus/detect-A.tsv" "$cache/versus/detect-B.tsv" && echo "detect: the same events"
            ;;
        features)
            pair features "$runs" 600 sh -c "'exec $python @TREE@/bench/_stages.py features $cache/long-3600s.wav >>@OUT@.json'"
            ;;
        clip)
            pair clip $((runs * 3)) 300 "$python" -m soundnet detect "$cache/clip-10s.wav" --model "$model" --format tsv -o @OUT@.tsv
            cmp "$cache/versus/clip-A.tsv" "$cache/versus/clip-B.tsv" && echo "clip: the same events"
            ;;
        extract)
            pair extract "$runs" 900 sh -c "'rm -rf @OUT@ && exec $python -m soundnet -q extract $cache/extract-32x240s -a $cache/extract-32x240s.tsv --out @OUT@ --jobs 1'"
            ;;
        *)
            echo "unknown figure $figure (detect, features, clip, extract)" >&2
            exit 2
            ;;
    esac
done
