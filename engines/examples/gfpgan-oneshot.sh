#!/bin/sh
# Run GFPGAN's own inference_gfpgan.py once for one photo, put the restored image at exactly <output>, and leave
# nothing else behind. Used by engines/examples/gfpgan-inference.json (a one-shot profile; the worker passes argv,
# never a shell string — this script only quotes what it was given).
#   gfpgan-oneshot.sh <GFPGAN checkout> <python> <input> <output> <version> <scale> <bgTile> <weight>
# inference_gfpgan.py writes <outdir>/restored_imgs/<input stem>.<ext> plus cropped/restored faces and comparisons;
# we give it a private temporary folder and keep only the restored image.
set -eu
[ "$#" -eq 8 ] || { echo "usage: $0 <gfpgan_dir> <python> <input> <output> <version> <scale> <bgTile> <weight>" >&2; exit 2; }
gfpgan_dir=$1 python=$2 input=$3 output=$4 version=$5 scale=$6 bg_tile=$7 weight=$8
work=$(mktemp -d "${TMPDIR:-/tmp}/gfpgan-oneshot.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
# The output extension decides the format; the worker converts a PNG to WebP when WebP was asked for.
case "${output##*.}" in jpg|jpeg) ext=jpg ;; *) ext=png ;; esac  # its --ext knows auto|jpg|png
cd "$gfpgan_dir"
"$python" inference_gfpgan.py -i "$input" -o "$work" -v "$version" -s "$scale" --bg_tile "$bg_tile" -w "$weight" --ext "$ext"
result=$(find "$work/restored_imgs" -type f | head -n 1)
[ -n "$result" ] || { echo "inference_gfpgan.py wrote no restored image (no face found and no background upsampler?)" >&2; exit 1; }
mv "$result" "$output"
