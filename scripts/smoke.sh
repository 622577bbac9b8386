#!/usr/bin/env bash
# Smoke test: the README's curl walk-through against a live service.
#
#   scripts/smoke.sh [BASE_URL]        (default http://127.0.0.1:8000)
#
# Enrolls two photos of one LFW person, identifies a third photo of them, identifies a
# stranger, checks an error, erases the person and checks they are unknown afterwards.
# Every `curl` line below is also in the README, character for character (a test checks).
# Needs only bash, curl and python3 (for reading JSON). Photos come from ../shared/data,
# relative to the repository root. Set FACEID_API_KEY when the service has keys configured.
# Run it against an empty gallery (a fresh FACEID_DATA_DIR): with other people enrolled,
# the stranger could legitimately match one of them.
set -euo pipefail

BASE="${1:-http://127.0.0.1:8000}"
BASE="${BASE%/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$(cd "$ROOT/.." && pwd)/shared/data"
PERSON="George_W_Bush"

for f in lfw/train/George_W_Bush/George_W_Bush_0001.jpg \
         lfw/train/George_W_Bush/George_W_Bush_0002.jpg \
         lfw/train/George_W_Bush/George_W_Bush_0003.jpg \
         lfw/train/Serena_Williams/Serena_Williams_0001.jpg; do
  [[ -f "$DATA/$f" ]] || { echo "smoke: missing photo $DATA/$f" >&2; exit 2; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
BODY="$WORK/body.json"

AUTH=()
if [[ -n "${FACEID_API_KEY:-}" ]]; then
  AUTH=(-H "Authorization: Bearer ${FACEID_API_KEY}")
fi

FAILED=0
fail() { echo "  FAIL: $*" >&2; FAILED=$((FAILED + 1)); }

# step DESCRIPTION EXPECTED_STATUS curl ARGS...
# Runs the curl command (plus the auth header, -o and -w), prints it and the response,
# and checks the HTTP status. Returns 1 on a status mismatch so callers can skip checks.
step() {
  local desc="$1" expected="$2" status
  shift 2
  echo
  echo "==> $desc"
  echo "    \$ $*"
  : > "$BODY"
  status="$("$@" ${AUTH[@]+"${AUTH[@]}"} -o "$BODY" -w '%{http_code}')" || true
  echo "    <- HTTP $status $(head -c 400 "$BODY")"
  if [[ "$status" != "$expected" ]]; then
    fail "$desc: expected HTTP $expected, got $status"
    return 1
  fi
}

# json EXPR: evaluates a Python expression over the response body `d`; None prints "null".
json() {
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2], {}, {"d": d})
print("null" if v is None else v)
' "$BODY" "$1" 2>/dev/null || echo "<unreadable: $1>"
}

# expect_identity WANT: the largest (first) face of the last /identify answer is WANT.
expect_identity() {
  local want="$1" got n
  n="$(json 'len(d["faces"])')"
  if [[ "$n" == "0" || "$n" == "<unreadable"* ]]; then
    fail "expected a face identified as '$want', got $n faces"
    return
  fi
  got="$(json 'd["faces"][0]["identity"]')"
  if [[ "$got" == "$want" ]]; then
    echo "    ok: identity=$got score=$(json 'd["faces"][0]["score"]')"
  else
    fail "expected identity '$want', got '$got' (score $(json 'd["faces"][0]["score"]'))"
  fi
}

cd "$WORK"   # notes.txt is written here; the photo paths are absolute
echo 'this is not a photo' > notes.txt
echo "smoke test against $BASE (photos from $DATA)"

if step "health" 200 \
  curl -sS "$BASE/health"; then
  [[ "$(json 'd["status"]')" == "ok" ]] || fail "health status is not ok"
fi

# Erase leftovers of an earlier run against the same gallery (204, or 404 when absent).
status="$(curl -sS -X DELETE ${AUTH[@]+"${AUTH[@]}"} -o /dev/null -w '%{http_code}' \
  "$BASE/identities/$PERSON")" || true
[[ "$status" == "204" || "$status" == "404" ]] || fail "cleanup: DELETE gave HTTP $status"

if step "enroll a first photo of George W. Bush" 201 \
  curl -sS -X POST -F "image=@$DATA/lfw/train/George_W_Bush/George_W_Bush_0001.jpg" "$BASE/identities/George_W_Bush/faces"; then
  [[ "$(json 'd["identity"]')" == "$PERSON" ]] || fail "enrollment answered another identity"
fi

if step "enroll a second photo of him" 201 \
  curl -sS -X POST -F "image=@$DATA/lfw/train/George_W_Bush/George_W_Bush_0002.jpg" "$BASE/identities/George_W_Bush/faces"; then
  [[ "$(json 'd["identity"]')" == "$PERSON" ]] || fail "enrollment answered another identity"
fi

if step "identify a third photo of him: George_W_Bush" 200 \
  curl -sS -X POST -F "image=@$DATA/lfw/train/George_W_Bush/George_W_Bush_0003.jpg" "$BASE/identify"; then
  expect_identity "$PERSON"
fi

if step "identify a stranger, never enrolled: unknown (null)" 200 \
  curl -sS -X POST -F "image=@$DATA/lfw/train/Serena_Williams/Serena_Williams_0001.jpg" "$BASE/identify"; then
  expect_identity null
fi

if step "a text file is not a photo: 415" 415 \
  curl -sS -X POST -F "image=@notes.txt" "$BASE/identify"; then
  code="$(json 'd["error"]["code"]')"
  [[ "$code" == "unsupported_media_type" ]] || fail "error code is '$code', not unsupported_media_type"
fi

if step "erase him from the gallery" 204 \
  curl -sS -X DELETE "$BASE/identities/George_W_Bush"; then
  :
fi

if step "identify the third photo again: unknown (null) now" 200 \
  curl -sS -X POST -F "image=@$DATA/lfw/train/George_W_Bush/George_W_Bush_0003.jpg" "$BASE/identify"; then
  expect_identity null
fi

echo
if ((FAILED > 0)); then
  echo "smoke test FAILED: $FAILED check(s) failed against $BASE" >&2
  exit 1
fi
echo "smoke test passed against $BASE"
