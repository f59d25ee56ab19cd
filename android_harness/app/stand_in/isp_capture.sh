#!/system/bin/sh
# Stand-in for the capture app on a device that has no `am` (the test device, shared/device/fakeadbd.py).
#
# Same command line as the real thing, with `isp_capture` in place of `am`:
#
#     isp_capture start [-W] -n <package>/.CaptureActivity --es output /sdcard/DCIM/isp_capture/<name>.dng \
#                 [--es camera_id ID] [--ei iso N] [--el exposure_ns N] [--es source FILE.dng]
#
# and the same file protocol as CaptureActivity (android_harness/app/README.md):
#   <dir>/.<name>.dng.pending   the DNG being written (never under the final name while incomplete)
#   <output>.json               capture metadata, written (temp + rename) before the DNG is renamed into place
#   <output>                    the DNG, renamed into place last: its presence means the capture is complete
#   <output>.error              one line of text instead, when the capture failed
#
# Instead of a camera it copies a DNG from $ISP_CAPTURE_SOURCE: a folder (the file named by `--es source`, else the
# first *.dng in it) or one file. On the stand-in device that is a host folder made visible read-only with
# `fakeadbd.py --host-ro /path/to/shared/data/dng`. POSIX sh only (runs under toybox/mksh and dash).

cmd=$1
[ $# -gt 0 ] && shift
if [ "$cmd" != start ]; then
    echo "Error: isp_capture supports only 'start' (as 'am start'), got '$cmd'" >&2
    exit 2
fi
output= source= component= camera= iso= exposure=
while [ $# -gt 0 ]; do
    case "$1" in
        -W|-S|--activity-clear-task) shift ;;
        -n) component=$2; shift 2 ;;
        --es) case "$2" in output) output=$3 ;; source) source=$3 ;; camera_id) camera=$3 ;; esac; shift 3 ;;
        --ei|--el) case "$2" in iso) iso=$3 ;; exposure_ns) exposure=$3 ;; esac; shift 3 ;;
        --ez|--ef|--eu) shift 3 ;;
        *) echo "Error: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
case "$output" in
    /*.dng) ;;
    *) echo "Error: --es output must be an absolute path ending in .dng, got '$output'" >&2; exit 2 ;;
esac
dir=$(dirname "$output")
base=$(basename "$output")
pending="$dir/.$base.pending"

fail() {
    printf '%s\n' "$1" > "$output.error.tmp" && mv -f "$output.error.tmp" "$output.error"
    rm -f "$pending" "$output.json.tmp"
    echo "Error: $1" >&2
    exit 1
}

mkdir -p "$dir" || { echo "Error: cannot create $dir" >&2; exit 1; }
rm -f "$output.error" "$output" "$output.json"
src=$ISP_CAPTURE_SOURCE
[ -n "$src" ] || fail "ISP_CAPTURE_SOURCE is not set: no DNG to stand in for a camera capture"
if [ -d "$src" ]; then
    if [ -n "$source" ]; then file="$src/$source"; else file=$(ls "$src"/*.dng 2>/dev/null | head -n 1); fi
else
    file=$src
fi
[ -n "$file" ] && [ -f "$file" ] || fail "no source DNG '${file:-$src/*.dng}' visible on the device"

echo "Starting: Intent { cmp=$component (stand-in: isp_capture) }"
cp "$file" "$pending" 2>/dev/null && chmod 644 "$pending" || fail "could not write $pending (storage full or not writable)"
now=$(date +%s)
if [ -n "$camera" ]; then camera_json="\"$camera\""; else camera_json=null; fi
printf '{"stand_in": true, "component": "%s", "source": "%s", "camera_id": %s, "iso": %s, "exposure_ns": %s, "sensor_timestamp_ns": %s, "created_unix_s": %s, "bytes": %s}\n' \
    "$component" "$file" "$camera_json" "${iso:-null}" "${exposure:-null}" \
    "${now}000000000" "$now" "$(wc -c < "$pending" | tr -d ' ')" > "$output.json.tmp" \
    || fail "could not write $output.json.tmp"
mv -f "$output.json.tmp" "$output.json" || fail "could not rename $output.json.tmp"
mv -f "$pending" "$output" || fail "could not rename $pending to $output"
echo "Status: ok"
echo "Output: $output"
