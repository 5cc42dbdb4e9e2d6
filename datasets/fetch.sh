#!/usr/bin/env bash
# Fetch the public datasets the recipes name into datasets/<name>/ (the .jsonl files are
# git-ignored; each directory's committed SOURCE.md holds the provenance and licence notice).
#
#   datasets/fetch.sh                 all datasets
#   datasets/fetch.sh wikisql-mlx     only the ones named (wikisql-mlx, wwdc25-mlx)
#
# Environment:
#   DATASETS_OUT=DIR      write DIR/<name>/ instead of datasets/<name>/ (SOURCE.md is copied along)
#   DATASETS_MIRROR=DIR   copy DIR/<name>/<file> instead of downloading (offline use, tests)
#
# Every file is written to a temporary file beside its destination and moved into place only
# once its sha256 matches, so nothing half-written is ever left. Files already present with the
# right hash are skipped. A download failure or a checksum mismatch stops with a non-zero exit
# and a message naming the file. Needs bash, curl or wget, and sha256sum or shasum.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${DATASETS_OUT:-$HERE}"
MIRROR="${DATASETS_MIRROR:-}"
COMMIT=7ddca42f4dc83ea70f4c53d1b6a917d335ab435d
BASE_URL="https://raw.githubusercontent.com/ml-explore/mlx-examples/$COMMIT"

# name file path-in-mlx-examples sha256
FILES=(
  "wikisql-mlx train.jsonl lora/data/train.jsonl 1b386f32e45417a55497e780fcb4e518d1b220531e9a2298ab536492871944d6"
  "wikisql-mlx valid.jsonl lora/data/valid.jsonl f4db9a5879dbe4ad43cb47bef542f0d7e48bb71bca36ae981976928b081a339e"
  "wikisql-mlx test.jsonl lora/data/test.jsonl 4b722f6ac3ef5d52a34f34c48920bb5d81018af7c366c79f92769c2bfc7e168c"
  "wwdc25-mlx train.jsonl wwdc25/data/train.jsonl 0f798d60e575d410927b894ad4c114d5a18c04ff58722ac21f5667f38a985e30"
  "wwdc25-mlx valid.jsonl wwdc25/data/valid.jsonl 95ffb3d5ecc53d5ecc2bd95bc2d99710543382eb5b728a672d445e75e76751b9"
)
NAMES="wikisql-mlx wwdc25-mlx"

TMP=""
trap 'if [ -n "$TMP" ]; then rm -f "$TMP"; fi' EXIT
trap 'exit 130' INT TERM

die() {
  echo "datasets/fetch.sh: $*" >&2
  exit 1
}

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    die "neither sha256sum nor shasum is installed"
  fi
}

# download URL DEST: curl or wget, whichever exists.
download() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    die "neither curl nor wget is installed"
  fi
}

# fetch NAME FILE PATH SHA: one file, verified, moved into place.
fetch() {
  local name="$1" file="$2" path="$3" sha="$4"
  local dir="$OUT/$name" dest="$OUT/$name/$file" src got
  if [ -f "$dest" ] && [ "$(sha256 "$dest")" = "$sha" ]; then
    echo "$name/$file: present, sha256 ok"
    return
  fi
  mkdir -p "$dir"
  TMP="$(mktemp "$dir/.$file.part.XXXXXX")"
  if [ -n "$MIRROR" ]; then
    src="$MIRROR/$name/$file"
    cp "$src" "$TMP" 2>/dev/null || die "$name/$file: cannot copy from the mirror ($src)"
  else
    src="$BASE_URL/$path"
    download "$src" "$TMP" || die "$name/$file: download failed ($src)"
  fi
  got="$(sha256 "$TMP")"
  if [ "$got" != "$sha" ]; then
    die "$name/$file: sha256 mismatch (expected $sha, got $got) from $src; nothing written"
  fi
  chmod 644 "$TMP"
  mv -f "$TMP" "$dest"
  TMP=""
  echo "$name/$file: fetched, sha256 ok"
}

# The provenance and licence notice travels with the files.
notice() {
  local name="$1"
  if [ "$OUT/$name/SOURCE.md" -ef "$HERE/$name/SOURCE.md" ]; then
    return
  fi
  cp "$HERE/$name/SOURCE.md" "$OUT/$name/SOURCE.md" || die "$name: cannot write SOURCE.md"
}

main() {
  local wanted=("$@") name entry
  if [ ${#wanted[@]} -eq 0 ]; then
    read -r -a wanted <<<"$NAMES"
  fi
  for name in "${wanted[@]}"; do
    case " $NAMES " in
      *" $name "*) ;;
      *) die "unknown dataset '$name' (known: $NAMES)" ;;
    esac
  done
  for name in "${wanted[@]}"; do
    for entry in "${FILES[@]}"; do
      # shellcheck disable=SC2086 # the table's fields are single words
      set -- $entry
      if [ "$1" = "$name" ]; then
        fetch "$@"
      fi
    done
    notice "$name"
  done
}

main "$@"
